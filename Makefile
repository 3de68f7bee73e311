# The README's commands. Each installs what it needs into ./.venv first.
.PHONY: serve test train-dcgan bench

serve:          ## the gateway on the shipped models (HTTP :8000, gRPC :50051), embedded ONNX Runtime; ARGS="..." go to ganserve serve
	scripts/serve.sh $(ARGS)

test:           ## the whole test suite
	scripts/test.sh

train-dcgan:    ## retrain the shipped DCGAN on full MNIST (see model_repository/dcgan/README.md)
	scripts/bootstrap.sh
	.venv/bin/ganserve train --preset dcgan-mnist --data ../shared/data/mnist --out runs/dcgan-mnist --steps 20000

bench:          ## training-loop throughput benchmark
	scripts/bootstrap.sh
	.venv/bin/python benchmarks/bench_train_loop.py --data ../shared/data/mnist
