# The two commands of the README. Both install what is missing first (scripts/setup.sh).
PY := $(if $(VIRTUAL_ENV)$(CONDA_PREFIX),python,.venv/bin/python)

.PHONY: setup demo test
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m segview --demo

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest
