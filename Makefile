# The two commands of the README; each installs what is missing first.
.PHONY: run test build

run:
	scripts/run.sh

test:
	scripts/test.sh

build:
	scripts/bootstrap.sh
	scripts/build.sh
