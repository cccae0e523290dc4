# Shared rules for building eBPF objects with clang-14 and libbpf's headers (API.md §3), included
# by tests/progs/Makefile and scenarios/progs/Makefile.  The built .o files are committed so that
# tests and scenarios run without clang:
#   make -C DIR          rebuild every object in DIR
#   make -C DIR check    rebuild into a temporary folder and fail if any committed object differs
#                        (the objects are reproducible: the debug info's compile directory is
#                        mapped to ".")
CLANG ?= clang-14
MULTIARCH := $(shell $(CLANG) -print-multiarch 2>/dev/null || gcc -dumpmachine)
CFLAGS := -O2 -g -target bpf -fdebug-prefix-map=$(CURDIR)=. -I/usr/include/$(MULTIARCH) -Wall -Werror

SRCS := $(sort $(wildcard *.bpf.c))
OBJS := $(SRCS:.c=.o)

.PHONY: all check clean

all: $(OBJS)

%.bpf.o: %.bpf.c
	$(CLANG) $(CFLAGS) -c $< -o $@

check:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && status=0 && \
	for src in $(SRCS); do \
		obj=$${src%.c}.o; \
		$(CLANG) $(CFLAGS) -c $$src -o "$$tmp/$$obj" || exit 1; \
		if ! cmp -s "$$tmp/$$obj" "$$obj"; then \
			echo "$$obj differs from a fresh build of $$src (run make -C $(CURDIR))"; status=1; \
		fi; \
	done; \
	[ $$status -eq 0 ] && echo "all $(words $(SRCS)) objects match their sources"; exit $$status

clean:
	rm -f $(OBJS)
