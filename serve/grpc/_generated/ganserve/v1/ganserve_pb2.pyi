from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_GIF: _ClassVar[ImageFormat]
    IMAGE_FORMAT_APNG: _ClassVar[ImageFormat]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_GIF: ImageFormat
IMAGE_FORMAT_APNG: ImageFormat

class Image(_message.Message):
    __slots__ = ("data", "media_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    media_type: str
    def __init__(self, data: _Optional[bytes] = ..., media_type: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "version", "n", "seed", "truncation", "prompt", "format", "prompt_b", "mix", "levels")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_B_FIELD_NUMBER: _ClassVar[int]
    MIX_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    n: int
    seed: int
    truncation: float
    prompt: str
    format: ImageFormat
    prompt_b: str
    mix: float
    levels: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., n: _Optional[int] = ..., seed: _Optional[int] = ..., truncation: _Optional[float] = ..., prompt: _Optional[str] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., prompt_b: _Optional[str] = ..., mix: _Optional[float] = ..., levels: _Optional[bool] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("seed", "image", "levels")
    SEED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    seed: int
    image: Image
    levels: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, seed: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., levels: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("model", "version", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., images: _Optional[_Iterable[_Union[GeneratedImage, _Mapping]]] = ...) -> None: ...

class InterpolateRequest(_message.Message):
    __slots__ = ("model", "version", "seed_a", "seed_b", "frames", "truncation", "format", "frame_duration_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_A_FIELD_NUMBER: _ClassVar[int]
    SEED_B_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FRAME_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    seed_a: int
    seed_b: int
    frames: int
    truncation: float
    format: ImageFormat
    frame_duration_ms: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., seed_a: _Optional[int] = ..., seed_b: _Optional[int] = ..., frames: _Optional[int] = ..., truncation: _Optional[float] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., frame_duration_ms: _Optional[int] = ...) -> None: ...

class InterpolateResponse(_message.Message):
    __slots__ = ("model", "version", "seed_a", "seed_b", "t", "frames", "animation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_A_FIELD_NUMBER: _ClassVar[int]
    SEED_B_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ANIMATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    seed_a: int
    seed_b: int
    t: _containers.RepeatedScalarFieldContainer[float]
    frames: _containers.RepeatedCompositeFieldContainer[Image]
    animation: Image
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., seed_a: _Optional[int] = ..., seed_b: _Optional[int] = ..., t: _Optional[_Iterable[float]] = ..., frames: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., animation: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class UpscaleRequest(_message.Message):
    __slots__ = ("model", "version", "image", "format", "tile_size", "tile_overlap")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILE_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    image: Image
    format: ImageFormat
    tile_size: int
    tile_overlap: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., tile_size: _Optional[int] = ..., tile_overlap: _Optional[int] = ...) -> None: ...

class UpscaleResponse(_message.Message):
    __slots__ = ("model", "version", "image")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    image: Image
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "version", "kind", "max_batch_size", "value_range", "latent_dim", "channels", "image_size", "scale", "metadata", "tokenizer", "max_tokens", "embedding_dim", "steps", "is_default")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    VALUE_RANGE_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    kind: str
    max_batch_size: int
    value_range: _containers.RepeatedScalarFieldContainer[float]
    latent_dim: int
    channels: int
    image_size: int
    scale: int
    metadata: _containers.ScalarMap[str, str]
    tokenizer: str
    max_tokens: int
    embedding_dim: int
    steps: _containers.RepeatedCompositeFieldContainer[ModelStep]
    is_default: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., kind: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., value_range: _Optional[_Iterable[float]] = ..., latent_dim: _Optional[int] = ..., channels: _Optional[int] = ..., image_size: _Optional[int] = ..., scale: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., tokenizer: _Optional[str] = ..., max_tokens: _Optional[int] = ..., embedding_dim: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[ModelStep, _Mapping]]] = ..., is_default: _Optional[bool] = ...) -> None: ...

class ModelStep(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ModelProblem(_message.Message):
    __slots__ = ("model", "version", "message")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    message: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "problems")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    problems: _containers.RepeatedCompositeFieldContainer[ModelProblem]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., problems: _Optional[_Iterable[_Union[ModelProblem, _Mapping]]] = ...) -> None: ...
