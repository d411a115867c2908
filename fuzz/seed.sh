#!/bin/sh
# Writes a few encoded tables into the table_parse corpus as seeds. They come
# from libhosthog's format test, so they always match the current format.
set -eu
cd "$(dirname "$0")/.."
corpus="$PWD/fuzz/corpus/table_parse"
mkdir -p "$corpus"
HOSTHOG_FUZZ_SEEDS="$corpus" cargo test -q -p libhosthog --test format seed_tables_round_trip
ls -l "$corpus"
# A full table with its change file, for table_pair.
pairs="$PWD/fuzz/corpus/table_pair"
mkdir -p "$pairs"
HOSTHOG_FUZZ_SEEDS="$pairs" cargo test -q -p libhosthog --test delta a_change_file_applies_to_its_full_table
ls -l "$pairs"
# Inputs that once failed a target (fuzz/regressions/TARGET/), so every run
# tries them again first.
for dir in "$PWD"/fuzz/regressions/*/; do
    target=$(basename "$dir")
    mkdir -p "$PWD/fuzz/corpus/$target"
    cp "$dir"* "$PWD/fuzz/corpus/$target/"
done
