# The same variables locally and in CI: AWS_ACCOUNT_ID, AWS_REGION, ECR_REPOSITORY, IMAGE_TAG.
# Credentials come from the AWS default chain (profile, SSO session, OIDC web identity); none are stored here.
#
#   make docker-build                         build and tag locally, push nothing
#   make docker-push IMAGE_TAG=v1.2.3         build, push <sha>, latest and v1.2.3 to ECR
#   make demo / make test / make bench

ECRBUILD      ?= target/release/ecrbuild
SHA           ?= $(shell git rev-parse HEAD 2>/dev/null)
DOCKERFILE    ?= api/Dockerfile
ECRBUILD_ARGS ?=

export AWS_ACCOUNT_ID AWS_REGION ECR_REPOSITORY IMAGE_TAG

.PHONY: build test demo bench docker-build docker-push lint

build:
	cargo build --release --locked

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

bench: build
	bash bench/run.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings -W clippy::too_many_lines
	terraform fmt -check -recursive terraform

docker-build: build
	$(ECRBUILD) --sha "$(SHA)" -f $(DOCKERFILE) --no-push $(ECRBUILD_ARGS)

docker-push: build
	$(ECRBUILD) --sha "$(SHA)" -f $(DOCKERFILE) $(ECRBUILD_ARGS)
