# The two set-up commands of the README. Both create the virtual environment if it is missing.
.PHONY: demo test venv lint format

demo:
	./scripts/demo.sh $(ARGS)

test:
	./scripts/test.sh $(ARGS)

venv:
	./scripts/venv.sh

format:
	./.venv/bin/ruff format . && ./.venv/bin/ruff check --fix .
