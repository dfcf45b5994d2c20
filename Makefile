# Two commands do all the set-up: `make run` and `make test` (see README.md).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

$(BIN)/kraft: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: install run test bench
install: $(BIN)/kraft

run: $(BIN)/kraft  ## the default simulation: every policy on the bundled Philly sample
	$(BIN)/kraft compare --load 0.8

test: $(BIN)/kraft
	$(BIN)/pytest -q

bench: $(BIN)/kraft  ## speed figures into bench/results (philly needs the shared data)
	for p in fifo backfill fairshare las srtf; do $(BIN)/python bench/run.py cycle --policy $$p; done
	$(BIN)/python bench/run.py scale
	$(BIN)/python bench/run.py philly
	$(BIN)/python bench/control.py
	$(BIN)/python bench/control.py --db postgresql://postgres@127.0.0.1:5432/postgres
	$(BIN)/python bench/fleet_scale.py --db postgresql://postgres@127.0.0.1:5432/postgres
	$(BIN)/python bench/serve_scale.py --db postgresql://postgres@127.0.0.1:5432/postgres
	$(BIN)/python bench/ha.py --db postgresql://postgres@127.0.0.1:5432/postgres
	$(BIN)/python bench/engines.py local
	if [ -d "$${KRAFT_DATA_DIR:-../shared/data}/inference" ]; then $(BIN)/python bench/infer.py --shared-data "$${KRAFT_DATA_DIR:-../shared/data}"; fi
	if [ -n "$$SLURM_CONF" ]; then $(BIN)/python bench/engines.py slurm; fi
	if [ -n "$$KRAFT_RAY_UP" ]; then $(BIN)/python bench/engines.py ray; fi
