# The two set-up commands of the README. Both create the virtual environment if it is missing.
# `make check` is the fast lane (lint + the tests not marked slow, ~4 min on 2 cores); `make test` is CI's.
.PHONY: demo test check venv format

demo:
	./scripts/demo.sh $(ARGS)

test:
	./scripts/test.sh $(ARGS)

check:
	./scripts/check.sh $(ARGS)

venv:
	./scripts/venv.sh

format:
	./.venv/bin/ruff format . && ./.venv/bin/ruff check --fix .
