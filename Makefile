# The two commands of the README; each installs what is missing first.
.PHONY: run test build bench

run:
	scripts/run.sh

test:
	scripts/test.sh

build:
	scripts/bootstrap.sh
	scripts/build.sh

bench:
	scripts/bench.sh
