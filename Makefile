# The README's commands. Each installs what it needs into ./.venv first.
.PHONY: serve test train-dcgan bench

serve:          ## the gateway on the shipped models (HTTP :8000, gRPC :50051), embedded ONNX Runtime; ARGS="..." go to ganserve serve
	scripts/serve.sh $(ARGS)

test:           ## the whole test suite
	scripts/test.sh

train-dcgan:    ## retrain the shipped DCGAN: the previous one (20k steps, git a9905f4) continued 5k steps with z_norm=pixel (see model_repository/dcgan/README.md)
	scripts/bootstrap.sh
	mkdir -p runs && git show a9905f4:model_repository/dcgan/1/model.onnx > runs/dcgan-v1.onnx
	.venv/bin/ganserve train --preset dcgan-mnist --data ../shared/data/mnist --out runs/dcgan-mnist --steps 5000 \
		--set model.z_norm=pixel --set train.init_from=runs/dcgan-v1.onnx --set train.checkpoint_every=250 --set train.sample_every=500

bench:          ## training-loop throughput benchmark
	scripts/bootstrap.sh
	.venv/bin/python benchmarks/bench_train_loop.py --data ../shared/data/mnist
