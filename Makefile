# The two commands of the README. Both install what is missing first (scripts/setup.sh).
PY := $(if $(VIRTUAL_ENV)$(CONDA_PREFIX),python,.venv/bin/python)

.PHONY: setup demo test
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m segview --demo

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

# The shipped checkpoints (segview/resources/models): CE and CE + Dice (alpha 1) for the cardiac
# and the lung phantom task; training cases use phantom seeds 0..N-1, tests score seeds
# from 1000 on. The lung runs use the lung window: faint ground glass is close to the
# parenchyma.
SHIPPED := --input-size 128 --base-channels 16 --schedule poly --seed 0
CARDIAC := --phantom cardiac --cases 24 --epochs 30 --foreground-fraction 0 $(SHIPPED)
LUNG := --phantom lung --cases 40 --epochs 50 --ct-window -1350 150 $(SHIPPED)
# The click model: both tasks in one run (seeds 0..39), starting masks from the four
# checkpoints' predictions (among perturbed references and empty masks); its own defaults:
# input 96, base 16, depth 4, CE + Dice, poly lr 1e-3, batch 16, up to 3 rounds of clicks.
SEGMENTATION := cardiac_ce cardiac_ce_dice lung_ce lung_ce_dice
INTERACTIVE := --interactive --phantom cardiac --phantom lung --cases 40 --seed 0 --epochs 20 \
	--samples-per-epoch 4096 $(foreach m,$(SEGMENTATION),--from-model segview/resources/models/$(m).safetensors)

.PHONY: models
models: setup
	$(PY) -m segview train $(CARDIAC) --loss ce -o runs/cardiac_ce
	$(PY) -m segview train $(CARDIAC) --loss ce+dice --alpha 1 -o runs/cardiac_ce_dice
	$(PY) -m segview train $(LUNG) --loss ce -o runs/lung_ce
	$(PY) -m segview train $(LUNG) --loss ce+dice --alpha 1 -o runs/lung_ce_dice
	for run in $(SEGMENTATION); do \
	    cp runs/$$run/best.safetensors segview/resources/models/$$run.safetensors; done
	$(PY) -m segview train $(INTERACTIVE) -o runs/interactive
	cp runs/interactive/best.safetensors segview/resources/models/interactive.safetensors
	cp runs/interactive/curves.png resources/interactive_curves.png
