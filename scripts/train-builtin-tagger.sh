#!/usr/bin/env bash
# Rebuild the built-in English UPOS tagger, src/ling/tagger/models/en_ewt.tagger, from
# UD English-EWT (UD_English-EWT at 15d613d, CC BY-SA 4.0) in ../shared/data.
# Deterministic: the same data and code give the same bytes (seeded shuffles, sorted output).
# The model is a derivative of UD English-EWT and is licensed CC BY-SA 4.0.
# Feature set 3: word clusters learnt from the word forms (not the tags) of train and dev;
# never from test. Three seeds are averaged (--ensemble 3).
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data/UD_English-EWT
cargo build --release --bin asa-lth
BIN="${CARGO_TARGET_DIR:-target}/release/asa-lth"
"$BIN" asa train-tagger \
  --train "$D/en_ewt-ud-train.conllu" \
  --kind perceptron --format builtin --iterations 12 --shuffle-seed 1 --ensemble 3 \
  --unlabelled "$D/en_ewt-ud-dev.conllu" \
  --dev "$D/en_ewt-ud-dev.conllu" --test "$D/en_ewt-ud-test.conllu" \
  --provenance "UD_English-EWT at 15d613d: en_ewt-ud-train.conllu (12,544 sentences, 204,577 words); dev/test accuracy on en_ewt-ud-dev/test.conllu" \
  --licence "CC BY-SA 4.0: a derivative of UD English-EWT (Universal Dependencies English Web Treebank contributors)" \
  --out-file src/ling/tagger/models/en_ewt.tagger
# The binary embeds the model: build again so that `--tagger builtin` uses the new one.
cargo build --release --bin asa-lth
