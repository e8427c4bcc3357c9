# The libFuzzer build: clang with -fsanitize=fuzzer,address,undefined, in
# its own folder so that the normal build is untouched. Driven by make
# fuzz (Makefile.am); usable alone from the source tree:
#	make -f tests/fuzz/fuzz.mk [FUZZ_TIME=30] [FUZZ_TARGETS="virtq ..."] run
# Needs Debian's clang-16 and libfuzzer-16-dev (tools/dev installs them).

top_srcdir ?= .
B ?= build-fuzz
FUZZ_CC ?= clang-16
FUZZ_TIME ?= 30
FUZZ_TARGETS ?= virtq virtio_blk virtio_net virtio_rng virtio_vsock snapshot \
	agentproto payload mask zip ciconfig tarin ext4walk ocimanifest ghwebhook ghjson lfsbatch s3xml dockercfg

SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer $(SAN) -fsanitize=fuzzer-no-link \
	-Wall -Wextra -Wno-unused-parameter \
	-I$(top_srcdir) -D_GNU_SOURCE -DKILN_DATADIR='"/nonexistent"' -DKILN_LIBEXECDIR='"/nonexistent"' $(shell pkg-config --cflags jansson yaml-0.1 libarchive ext2fs)
FUZZ_LIBS = $(shell pkg-config --libs jansson yaml-0.1 zlib libarchive ext2fs com_err libcurl libcrypto) -lpthread

VMM = vmm/log.c vmm/guestmem.c vmm/evloop.c vmm/ratelimit.c vmm/cow.c \
	vmm/virtio/queue.c vmm/virtio/mmio.c vmm/virtio/blk.c vmm/virtio/rng.c \
	vmm/virtio/net.c vmm/virtio/vsock_proto.c vmm/virtio/vsock.c \
	vmm/snapshot.c lib/sha256.c lib/result.c
FGUEST = tests/fuzz/fguest.c $(VMM)

# Each target's sources beyond tests/fuzz/<name>.c.
virtq_SRCS = vmm/guestmem.c vmm/virtio/queue.c
virtio_blk_SRCS = $(FGUEST)
virtio_net_SRCS = $(FGUEST)
virtio_rng_SRCS = $(FGUEST)
virtio_vsock_SRCS = $(FGUEST)
snapshot_SRCS = $(VMM)
agentproto_SRCS = agent/proto.c job/agentmsg.c lib/vec.c
payload_SRCS = job/payload.c lib/varexpand.c lib/readfile.c lib/result.c lib/vec.c
mask_SRCS = gitlab/mask.c lib/result.c lib/vec.c
zip_SRCS = workspace/zip.c workspace/fstree.c lib/paths.c lib/result.c lib/vec.c
ciconfig_SRCS = localci/config.c lib/yaml.c localci/expr.c localci/rules.c localci/variables.c \
	lib/varexpand.c localci/pipeline.c localci/jobdef.c localci/instances.c localci/plan.c \
	lib/paths.c lib/readfile.c lib/result.c lib/vec.c lib/glob.c lib/treewalk.c
tarin_SRCS = workspace/guestdisk/tarstream.c lib/paths.c lib/result.c
ext4walk_SRCS = workspace/guestdisk/ext4walk.c lib/result.c lib/vec.c
ocimanifest_SRCS = oci/manifest.c oci/ref.c lib/result.c
ghwebhook_SRCS = github/webhook.c github/demand.c github/client.c lib/http.c lib/sha256.c lib/log.c lib/result.c lib/vec.c
s3xml_SRCS = cache/s3.c lib/result.c
ghjson_SRCS = github/jit.c github/demand.c github/client.c lib/http.c lib/log.c lib/result.c lib/vec.c
lfsbatch_SRCS = workspace/lfsbatch.c lib/result.c
dockercfg_SRCS = oci/dockercfg.c lib/result.c

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

.PHONY: all run coverage
all: $(addprefix $(B)/,$(FUZZ_TARGETS))

$(B)/obj/%.o: $(top_srcdir)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

define target_rule
$(B)/$(1): $(call obj,tests/fuzz/$(1).c $($(1)_SRCS))
	$(FUZZ_CC) $(SAN) -fsanitize=fuzzer -o $$@ $$^ $(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call target_rule,$(t))))

# Line coverage of what the last run's corpora reach (build-fuzz/corpus-last,
# else the seeds), by source file: a build with clang's source-based
# coverage instead of the sanitizers.
LLVM_BIN = /usr/lib/llvm-16/bin
COV_CFLAGS = -g -O0 -fprofile-instr-generate -fcoverage-mapping -fsanitize=fuzzer-no-link \
	-I$(top_srcdir) -D_GNU_SOURCE -DKILN_DATADIR='"/nonexistent"' -DKILN_LIBEXECDIR='"/nonexistent"' \
	$(shell pkg-config --cflags jansson yaml-0.1 libarchive ext2fs)
cov_obj = $(patsubst %.c,$(B)/cov/obj/%.o,$(1))

$(B)/cov/obj/%.o: $(top_srcdir)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(COV_CFLAGS) -c -o $@ $<

define cov_rule
$(B)/cov/$(1): $(call cov_obj,tests/fuzz/$(1).c $($(1)_SRCS))
	$(FUZZ_CC) -fprofile-instr-generate -fsanitize=fuzzer -o $$@ $$^ $(FUZZ_LIBS)

.PHONY: coverage-$(1)
coverage-$(1): $(B)/cov/$(1)
	@c=$(B)/corpus-last/$(1); [ -d $$$$c ] || c=$(top_srcdir)/tests/fuzz/corpus/$(1); \
	LLVM_PROFILE_FILE=$(B)/cov/$(1).profraw $(B)/cov/$(1) -runs=0 $$$$c >/dev/null 2>&1; \
	$(LLVM_BIN)/llvm-profdata merge -o $(B)/cov/$(1).profdata $(B)/cov/$(1).profraw && \
	echo "== $(1) ($$$$c)" && \
	$(LLVM_BIN)/llvm-cov report $(B)/cov/$(1) -instr-profile=$(B)/cov/$(1).profdata \
	  -show-region-summary=false -show-branch-summary=false -show-instantiation-summary=false \
	  $(addprefix $(top_srcdir)/,$(filter-out tests/fuzz/%,$($(1)_SRCS)))
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call cov_rule,$(t))))

coverage: $(addprefix coverage-,$(FUZZ_TARGETS))

run: all
	$(top_srcdir)/tests/fuzz/run.sh $(B) $(FUZZ_TIME) $(FUZZ_TARGETS)
