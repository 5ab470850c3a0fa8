# hastack — the two commands for a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := python3
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Molecule and Ansible output read as plain text in CI logs.
export NO_COLOR := 1
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

VARIANT ?= postgresql
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))

.PHONY: help demo bench test venv host image images lab lab-down lab-status converge lint unit promtool molecule clean

help:
	@echo "make demo       build the lab and converge site.yml on it (installs what it needs)"
	@echo "make demo VARIANT=sqlite   the SQLite path instead (Litestream, no database hosts)"
	@echo "make test       lint, unit tests and every Molecule scenario (installs what it needs)"
	@echo "make bench      after make demo: failover/switchover/rejoin against a bare promote, lag, site.yml, backup"
	@echo "make lab        create or start the lab hosts      make lab-down   remove them"
	@echo "make converge   run site.yml on the lab            make molecule SCENARIOS=default"

$(STAMP): requirements.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

venv: $(STAMP)

# podman, debootstrap, the host quirks and the lab image; each step is skipped when done.
host:
	bash scripts/host-setup.sh

image: host
	bash scripts/build-image.sh base

# Molecule also needs the cluster image: the lab image with the roles' packages installed
# (rebuilt when scripts/cluster-packages.txt changes).
images: host
	bash scripts/build-image.sh cluster

lab: venv image
	bash scripts/lab.sh up

lab-down:
	bash scripts/lab.sh down

lab-status:
	bash scripts/lab.sh status

converge: lab
	ANSIBLE_VAULT_PASSWORD_FILE=.lab/vault-pass ansible-playbook -i inventories/lab site.yml

demo: lab
	VARIANT=$(VARIANT) bash scripts/demo.sh

# Benchmarks on the lab `make demo` built (docs/BENCHMARKS.md). BENCH_ARGS for fewer or
# more: make bench BENCH_ARGS="--rounds 5 --modes baseline,cold".
BENCH_ARGS ?= --rounds 3 --switchovers 3 --lag 20 --rewind-scale 70 --site --backup-scale 64
bench: lab
	ANSIBLE_VAULT_PASSWORD_FILE=.lab/vault-pass python bench/bench.py $(BENCH_ARGS)

lint: venv
	yamllint -s .
	ansible-lint
	ruff check .

unit: venv
	pytest -q tests/unit

# promtool check rules + test rules on the alert rules (promtool from the cluster image).
promtool: venv images
	bash scripts/promtool.sh

molecule: venv images
	for s in $(SCENARIOS); do molecule test -s $$s; done

test: venv images
	SCENARIOS="$(SCENARIOS)" bash scripts/test.sh

clean: lab-down
	rm -rf $(VENV) .cache
