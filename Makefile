# The two commands of the README. Both install what is missing first (scripts/setup.sh).
PY := $(if $(VIRTUAL_ENV)$(CONDA_PREFIX),python,.venv/bin/python)

.PHONY: setup demo test
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m segview --demo

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

# The shipped checkpoints (resources/models): CE and CE + Dice (alpha 1) for the cardiac
# phantom task (the lung pair is still to come); training cases use phantom seeds 0..N-1,
# tests score seeds from 1000 on.
SHIPPED := --input-size 128 --base-channels 16 --schedule poly --seed 0
CARDIAC := --phantom cardiac --cases 24 --epochs 30 --foreground-fraction 0 $(SHIPPED)

.PHONY: models
models: setup
	$(PY) -m segview train $(CARDIAC) --loss ce -o runs/cardiac_ce
	$(PY) -m segview train $(CARDIAC) --loss ce+dice --alpha 1 -o runs/cardiac_ce_dice
	for run in cardiac_ce cardiac_ce_dice; do \
	    cp runs/$$run/best.safetensors resources/models/$$run.safetensors; done
