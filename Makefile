# nerfhw: every target creates .venv and installs the project when needed (quick the second time).
SHELL := /bin/bash
PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONFIG ?=
POINTS ?= 2000
WAVES ?=
CLI = $(PY) -m flows.cli

SCENE ?= builtin
PRESET ?= tiny
POLICY ?=
HW ?= default
EPISODES ?= 60
BUDGET ?=
RESUME ?=
OBJECTIVE ?=
BITS ?=
IMAGE ?= camera
comma := ,
MODE ?= mdl
TARGET ?=
TARGETS ?=
EPS ?=
SCENES ?= ../shared/data/nerf_synthetic_lego_400,../shared/data/nerf_llff_fern
HWS ?= default,onchip
SEEDS ?= 0
NAME ?= main
WORK ?=
RUN ?=
MAX_LOSS ?=
MODEL ?=
CHECKPOINT ?=
BREAKDOWN ?=

.PHONY: setup demo test verilog lint cosim bench train kilonerf kilo-compare quantize sweep search memory inr inr-cross acaq \
	acaq-table compare grid report compress hwrender dhq-area clean help

help:
	@echo "make demo    the main job on the built-in scene: train (tiny), search, Verilog, co-simulation, summary"
	@echo "make test    run the test suite (pytest)"
	@echo "make verilog [CONFIG=flows/configs/<name>.yaml | POLICY=runs/search-<name>/policy.yaml]  write build/verilog/<name>/<engine>.v"
	@echo "make lint    verilator --lint-only -Wall on every preset's Verilog"
	@echo "make cosim   [CONFIG=...] [POINTS=2000] [WAVES=1]  every engine of every preset; writes runs/cosim-<name>/summary.json"
	@echo "make bench   Verilator vs TLM simulated cycles/s, and the frame model's time per 800x800 frame; writes runs/bench/*.json"
	@echo "make train   [SCENE=builtin|<folder>] [PRESET=tiny|small|full] [MODEL=ngp|tensorf]  writes runs/train-<scene>-<preset>/"
	@echo "             (TensoRF-VM: runs/train-<scene>-<preset>-tensorf/)"
	@echo "make kilo-compare SCENE=.. [PRESET=tiny] [HW=default]  Instant-NGP vs KiloNeRF; runs/kilo-compare-<scene>-<preset>-<hw>/"
	@echo "make kilonerf SCENE=.. [PRESET=tiny] [KILO=tiny|smoke] [CELLS=16]  distil the trained field into KiloNeRF; runs/kilonerf-<scene>-<preset>/"
	@echo "make quantize [SCENE=..] [PRESET=..] [POLICY=uniform-<B>|fp|<policy.yaml>]  writes runs/quantize-<scene>-<preset>-<policy>/"
	@echo "             [QUANTIZER=uniform|dhq] [PLACEMENT=all|paper|rule] [CALIBRATION=min-max|mse|percentile]"
	@echo "             dhq: DHQ MLPs in ...-dhq-<placement>-<calibration>/, latency on the Hadamard datapath"
	@echo "make sweep   [SCENE=..] [PRESET=..] [BITS=16,12,10,8,6,4]  uniform PTQ table + PSNR-vs-FQR plot in runs/sweep-<scene>-<preset>/"
	@echo "make search  [SCENE=..] [PRESET=tiny] [HW=default] [EPISODES=60] [BUDGET=0.5] [OBJECTIVE=latency|tradeoff|quality]"
	@echo "             [MAX_LOSS=0.5] [RESUME=1] [MODEL=ngp|kilonerf] [QUANTIZER=uniform|dhq PLACEMENT=all|paper"
	@echo "             CALIBRATION=min-max|mse|percentile]  (dhq: HW=onchip, latency on the Hadamard datapath)"
	@echo "             DDPG mixed-precision search with TLM-proven latency; writes runs/search-<scene>-<preset>-<objective>/"
	@echo "make memory  [SCENE=..] [PRESET=tiny] [HW=default]  tables in DRAM on a trained scene: hit rates per level, DRAM"
	@echo "             bytes, stalls and latency for several caches, uniform-8 vs 4-bit tables; writes runs/memory-<scene>-<preset>/"
	@echo "make acaq    [SCENE=..] [PRESET=tiny] [MODE=mdl|mgl] [TARGET=<dB or MSE>] [EPS=1e-3] [ITERATIONS=600]"
	@echo "             A-CAQ learned bitwidths on a trained field; writes runs/acaq-<scene>-<preset>-<mode>/ (resumable)"
	@echo "make acaq-table [SCENE=..] [PRESET=tiny] [TARGETS=30,28] [ITERATIONS=600]  A-CAQ's Table 4 rows (PTQ, LSQ+,"
	@echo "             A-CAQ MDL and MGL); writes runs/acaq-table-<scene>-<preset>/"
	@echo "make compare [SCENE=..] [PRESET=tiny] [HW=default] [WORK=full|short|smoke]  our quality-constrained search"
	@echo "             vs A-CAQ, PTQ and LSQ+ at equal PSNR (Ray tasks); writes runs/compare-<scene>-<preset>-<hw>/ (resumable)"
	@echo "make grid    [SCENES=a,b] [HWS=default,onchip] [SEEDS=0] [WORK=full] [NAME=main]  the comparison over scenes x"
	@echo "             presets x seeds on Ray (RAY_ADDRESS for a cluster); writes runs/grid-<name>/ (resumable)"
	@echo "make report  RUN=runs/<search or compare folder>  one self-contained HTML page: <run>/report.html"
	@echo "make compress [SCENE=..] [PRESET=tiny] [MODEL=tensorf|ngp] [LAMBDAS=0.003,0.01,0.03,0.1] [BITS=8,6,4]"
	@echo "             ECTensoRF / entropy-coded hash tables with real bitstreams vs quantization + zstd;"
	@echo "             writes runs/compress-<scene>-<preset>-<model>/ (rd.md, rd.png; resumable)"
	@echo "make hwrender [SCENE=..] [PRESET=tiny] [POLICY=uniform-8|<policy.yaml> | CHECKPOINT=runs/final-*/checkpoint.pt]"
	@echo "             [HW=default]  test views through the"
	@echo "             accelerator's integer arithmetic vs fake-quant; writes runs/hwrender-<scene>-<preset>-<policy>-<hw>/"
	@echo "make dhq-area [PRESETS=had-small,had-inr,had-wide] [BITS=16,32]  the DHQ Hadamard datapath vs 16/32-bit"
	@echo "             fixed-point baselines of the same layer, synthesised (Yosys, xc7; up to an hour per large design the first time, cached):"
	@echo "             resources, cycles, latency, energy proxy vs the paper's claims; writes runs/dhq-area/"
	@echo "make inr     [IMAGE=camera|astronaut|coffee|chelsea|...] [BITS=8,6,4,3]  SIREN image INR: uniform, LSQ+, DHQ and"
	@echo "             DHQ+LSQ+ quantization of weights and activations; writes runs/inr-<image>/ (table, histograms)"
	@echo "make inr-cross [IMAGES=camera,astronaut,coffee,chelsea,rocket,coins] [BITS=8,6,4,3]  the crossed INR table:"
	@echo "             rotation placement x calibration x weight steps, PTQ (and LSQ+ QAT from min-max), 128 px;"
	@echo "             writes runs/inr-cross/inr-<image>/ and runs/inr-cross/crossed.{md,json,png}"

$(STAMP): pyproject.toml
	@for tool in g++ make perl chromium; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing build tools for Verilator and Chromium for the report page's test:$$missing"; \
		apt-get update -qq && apt-get install -y -qq g++ make perl chromium; \
	fi
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(CLI) demo

test: $(STAMP)
	$(PY) -m pytest -q

verilog: $(STAMP)
	$(CLI) verilog $(if $(CONFIG),--config $(CONFIG)) $(if $(POLICY),--policy $(POLICY))

lint: $(STAMP)
	$(CLI) lint $(if $(CONFIG),--config $(CONFIG))

cosim: $(STAMP)
	$(CLI) cosim $(if $(CONFIG),--config $(CONFIG)) --points $(POINTS) $(if $(WAVES),--waves)

bench: $(STAMP)
	$(CLI) bench $(if $(CONFIG),--config $(CONFIG))

LAMBDAS ?=

compress: $(STAMP)
	$(CLI) compress --scene $(SCENE) --preset $(PRESET) --model $(or $(MODEL),tensorf) $(if $(LAMBDAS),--lambdas $(LAMBDAS)) \
		$(if $(BITS),--bits $(BITS)) $(if $(ITERATIONS),--iterations $(ITERATIONS)) $(if $(POLICY),--policy $(POLICY))

train: $(STAMP)
	$(CLI) train --scene $(SCENE) --preset $(PRESET) $(if $(ITERATIONS),--iterations $(ITERATIONS)) $(if $(MODEL),--model $(MODEL))

kilonerf: $(STAMP)
	$(CLI) kilonerf --scene $(SCENE) --preset $(PRESET) $(if $(KILO),--kilo $(KILO)) $(if $(CELLS),--cells $(CELLS))

kilo-compare: $(STAMP)
	$(CLI) kilo-compare --scene $(SCENE) --preset $(PRESET) --hw $(HW)

quantize: $(STAMP)
	$(CLI) quantize --scene $(SCENE) --preset $(PRESET) --policy $(or $(POLICY),uniform-8) $(if $(QUANTIZER),--quantizer $(QUANTIZER)) $(if $(PLACEMENT),--placement $(PLACEMENT)) $(if $(CALIBRATION),--calibration $(CALIBRATION))

acaq: $(STAMP)
	$(CLI) acaq --scene $(SCENE) --preset $(PRESET) --mode $(MODE) $(if $(TARGET),--target $(TARGET)) $(if $(EPS),--eps $(EPS)) $(if $(ITERATIONS),--iterations $(ITERATIONS))

acaq-table: $(STAMP)
	$(CLI) acaq-table --scene $(SCENE) --preset $(PRESET) $(if $(TARGETS),--targets $(TARGETS)) $(if $(ITERATIONS),--iterations $(ITERATIONS))

sweep: $(STAMP)
	$(CLI) sweep --scene $(SCENE) --preset $(PRESET) $(if $(BITS),--bits $(BITS))

memory: $(STAMP)
	$(CLI) memory --scene $(SCENE) --preset $(PRESET) --hw $(HW)

search: $(STAMP)
	$(CLI) search --scene $(SCENE) --preset $(PRESET) --hw $(HW) --episodes $(EPISODES) $(if $(BUDGET),--budget $(BUDGET)) $(if $(OBJECTIVE),--objective $(OBJECTIVE)) $(if $(MAX_LOSS),--max-loss $(MAX_LOSS)) $(if $(RESUME),--resume) $(if $(MODEL),--model $(MODEL)) $(if $(QUANTIZER),--quantizer $(QUANTIZER)) $(if $(PLACEMENT),--placement $(PLACEMENT)) $(if $(CALIBRATION),--calibration $(CALIBRATION))

inr: $(STAMP)
	$(CLI) inr --image $(IMAGE) $(if $(BITS),--bits $(BITS))

IMAGES ?= camera,astronaut,coffee,chelsea,rocket,coins
CROSS = $(CLI) --runs runs/inr-cross inr --size 128 $(if $(BITS),--bits $(BITS)) \
	--rotations none,all,paper,rule --granularities tensor,channel
inr-cross: $(STAMP)
	for img in $(subst $(comma), ,$(IMAGES)); do \
	  $(CROSS) --image $$img --calibrations min-max,mse,percentile --training ptq && \
	  $(CROSS) --image $$img --calibrations min-max --training qat || exit 1; \
	done
	$(CLI) --runs runs/inr-cross inr-table --images $(IMAGES)

compare: $(STAMP)
	$(CLI) compare --scene $(SCENE) --preset $(PRESET) --hw $(HW) $(if $(WORK),--budget $(WORK))

grid: $(STAMP)
	$(CLI) grid --scenes $(SCENES) --preset $(PRESET) --hws $(HWS) --seeds $(SEEDS) --name $(NAME) $(if $(WORK),--budget $(WORK))

hwrender: $(STAMP)
	$(CLI) hwrender --scene $(SCENE) --preset $(PRESET) --hw $(HW) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),\
		--policy $(or $(POLICY),uniform-8)) $(if $(BREAKDOWN),--breakdown)

PRESETS ?=

dhq-area: $(STAMP)
	$(CLI) dhq-area $(if $(PRESETS),--presets $(PRESETS)) $(if $(BITS),--bits $(BITS))

report: $(STAMP)
	$(CLI) report --run $(RUN)

clean:
	rm -rf build runs
