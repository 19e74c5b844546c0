"""Build a real UMT5-style tokenizer offline: sentencepiece unigram trained on a shipped corpus.

The release uses the UMT5-XXL vocabulary, which cannot be downloaded here. Tests and the demo
use this one instead: the same model type (unigram), the same special ids (pad 0, EOS 1, unk 2)
and the same folder format (`T5Tokenizer`, loadable with `AutoTokenizer.from_pretrained`),
trained deterministically on ad copy in Latin, CJK, Hangul and Arabic script.
"""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path

import sentencepiece as spm
from transformers import T5Tokenizer

CORPUS = "tokenizer_corpus.txt"


def corpus_lines() -> list[str]:
    """The shipped multilingual corpus, one sentence per line."""
    text = resources.files("mova_model.assets").joinpath(CORPUS).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def train_pieces(vocab_size: int, seed: int = 0) -> list[tuple[str, float]]:
    """(piece, score) pairs of a unigram model; ids 0, 1, 2 are pad, EOS, unk."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus yields fewer pieces than asked: that is fine
        character_coverage=1.0,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        num_threads=1,  # with one thread and no sampling the result is deterministic
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    return [(processor.id_to_piece(i), processor.get_score(i))
            for i in range(processor.get_piece_size())]


def build_tokenizer(out_dir: Path, vocab_size: int, seed: int = 0) -> Path:
    """Train and save the tokenizer folder (at most `vocab_size` ids); returns `out_dir`."""
    pieces = train_pieces(vocab_size, seed)
    if len(pieces) > vocab_size:
        raise ValueError(f"tokenizer has {len(pieces)} pieces, more than vocab_size={vocab_size}")
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    readable_by_transformers_4(Path(out_dir) / "tokenizer_config.json")
    return Path(out_dir)


def readable_by_transformers_4(config_path: Path) -> None:
    """Drop transformers 5's empty `extra_special_tokens` list from a tokenizer_config.json.

    The original pins transformers<5, whose tokenizers read that field as a mapping and fail
    on a list ('list' object has no attribute 'keys'); empty, it adds nothing in either."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("extra_special_tokens") == []:
        del config["extra_special_tokens"]
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                               encoding="utf-8")
