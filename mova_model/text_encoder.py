"""Prompt -> UMT5 text embedding, with the release's cleaning, padding and zeroing (spec §5)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import ftfy
import torch
from safetensors import SafetensorError
from torch import Tensor, nn
from transformers import (
    AttentionInterface,
    PreTrainedTokenizerBase,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)
from transformers.activations import ACT2FN
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.utils import logging as transformers_logging

from mova_model.checkpoint import check_floating, list_checkpoint_keys
from mova_model.config import TextEncoderConfig
from mova_model.errors import CheckpointError

# transformers 5 runs UMT5 with SDPA by default and its "eager" kernel no longer upcasts the
# softmax; the release pinned transformers<5, whose UMT5 took the softmax in float32. This
# registered kernel is that computation (measured up to 0.03 apart from SDPA in bf16, §13.2).
REFERENCE_ATTENTION = "mova_eager_fp32_softmax"
FAST_ATTENTION = "sdpa"


def _eager_attention_fp32_softmax(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                                  attention_mask: Tensor | None, scaling: float | None = None,
                                  dropout: float = 0.0, position_bias: Tensor | None = None,
                                  **_: object) -> tuple[Tensor, Tensor]:
    """UMT5 attention as transformers 4 computed it: q·kᵀ (+ bias, + mask), softmax in fp32."""
    # query/key/value: (B, n, L, d)
    scores = torch.matmul(query, key.transpose(2, 3))
    if scaling is not None and scaling != 1.0:  # UMT5 folds the scale into its init (1.0)
        scores = scores * scaling
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores.float(), dim=-1).type_as(scores)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, L, n, d)
    return out, weights


def clean_prompt(text: str) -> str:
    """Fix mojibake, unescape HTML twice, collapse whitespace (§5.1)."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def umt5_config(config: TextEncoderConfig) -> UMT5Config:
    return UMT5Config(
        vocab_size=config.vocab_size, d_model=config.d_model, d_kv=config.d_kv,
        d_ff=config.d_ff, num_layers=config.num_layers, num_heads=config.num_heads,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        feed_forward_proj=config.feed_forward_proj, is_encoder_decoder=False, use_cache=False,
        dropout_rate=0.0,
    )


def build_text_encoder(config: TextEncoderConfig) -> UMT5EncoderModel:
    """A randomly initialised UMT5 encoder of the given size (works on the meta device)."""
    return UMT5EncoderModel(umt5_config(config)).eval()


def _checked_umt5_config(model_dir: Path) -> UMT5Config:
    """transformers' reading of `config.json`, with what it would only fail on later (an
    activation it does not know is a KeyError in the first layer) or not at all (another
    model type is loaded as UMT5 with a warning) refused here, naming the field."""
    path = model_dir / "config.json"
    try:
        stated = UMT5Config.get_config_dict(str(model_dir), local_files_only=True)[0]
        if stated.get("model_type", "umt5") != "umt5":
            raise CheckpointError(f"{path}: model_type={stated['model_type']!r}; MOVA's text "
                                  "encoder is UMT5 (model_type 'umt5')")
        config = UMT5Config.from_dict(stated)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{model_dir}: cannot load the text encoder ({err})") from err
    if config.dense_act_fn not in ACT2FN:
        raise CheckpointError(f"{path}: dense_act_fn={config.dense_act_fn!r} is no activation "
                              "transformers knows (UMT5 uses 'gelu_new')")
    return config


def _check_weight_headers(model_dir: Path, config: UMT5Config) -> None:
    """Read the safetensors headers ourselves before transformers loads them: it casts any
    dtype (int8 weights became zeros), raises raw errors for a truncated file, and answers a
    shape that differs from the config with a table. Other weight formats are left to
    transformers."""
    name = "model"
    if not ((model_dir / f"{name}.safetensors").is_file()
            or (model_dir / f"{name}.safetensors.index.json").is_file()):
        return
    stored = list_checkpoint_keys(model_dir, name)
    check_floating(stored)
    with torch.device("meta"):
        expected = {key: tuple(tensor.shape)
                    for key, tensor in UMT5EncoderModel(config).state_dict().items()}
    for key, (shape, _, path) in stored.items():
        if key in expected and tuple(shape) != expected[key]:
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {list(shape)}, but config.json (vocab_size="
                f"{config.vocab_size}, d_model={config.d_model}, d_kv={config.d_kv}, d_ff="
                f"{config.d_ff}, num_heads={config.num_heads}) makes it {list(expected[key])}")


@dataclass(frozen=True)
class PromptTokens:
    """A cleaned prompt's length in tokens (EOS included) and how many of them were encoded:
    fewer when it is longer than text_len (the release cuts it there without a word, keeping
    the first text_len - 1 tokens and the EOS)."""

    count: int
    kept: int

    @property
    def truncated(self) -> bool:
        return self.kept < self.count

    @property
    def dropped(self) -> int:
        return self.count - self.kept


class TextEncoder:
    """UMT5 encoder + tokenizer: `encode(prompts)` -> [B, text_len, d_model], padding zeroed."""

    def __init__(self, model: UMT5EncoderModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def from_folders(cls, model_dir: Path, tokenizer_dir: Path, *,
                     dtype: torch.dtype = torch.float32,
                     device: str | torch.device = "cpu") -> TextEncoder:
        """Load strictly (missing or unexpected weights are an error), offline."""
        for folder in (model_dir, tokenizer_dir):
            if not Path(folder).is_dir():
                raise CheckpointError(f"{folder}: missing component folder")
        transformers_logging.disable_progress_bar()  # the caller reports progress, not us
        config = _checked_umt5_config(Path(model_dir))
        _check_weight_headers(Path(model_dir), config)
        try:
            # The class model_index.json names (T5TokenizerFast, which transformers 5 names
            # T5Tokenizer), as diffusers loads it in the original (spec §2.2): with a
            # tokenizer.json alone, AutoTokenizer picks a bare backend with no pad or EOS
            # token and every prompt would fail to encode.
            tokenizer = T5Tokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        except (OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{tokenizer_dir}: cannot load the tokenizer ({err})") from err
        try:
            model, info = UMT5EncoderModel.from_pretrained(
                str(model_dir), config=config, dtype=dtype, local_files_only=True,
                output_loading_info=True)
        # RuntimeError: a tensor shape differs
        except (OSError, ValueError, RuntimeError, SafetensorError) as err:
            raise CheckpointError(f"{model_dir}: cannot load the text encoder ({err})") from err
        problems = {kind: sorted(info.get(kind, [])) for kind in
                    ("missing_keys", "unexpected_keys", "mismatched_keys")}
        problems = {k: v for k, v in problems.items() if v}
        if problems:
            listing = "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, v[:10]))}"
                                for k, v in problems.items())
            raise CheckpointError(f"{model_dir}: text encoder weights do not match ({listing})")
        AttentionInterface.register(REFERENCE_ATTENTION, _eager_attention_fp32_softmax)
        # ... with eager's additive float padding mask (unknown names would get another kind).
        AttentionMaskInterface.register(REFERENCE_ATTENTION, eager_mask)
        model.set_attn_implementation(REFERENCE_ATTENTION)
        if len(tokenizer) > model.config.vocab_size:
            raise CheckpointError(f"{tokenizer_dir}: tokenizer has {len(tokenizer)} ids but the "
                                  f"encoder's vocab_size is {model.config.vocab_size}")
        return cls(model.to(device).eval(), tokenizer)

    def token_count(self, prompt: str) -> int:
        """Tokens the cleaned prompt uses, EOS included (compare with text_len)."""
        return len(self.tokenizer(clean_prompt(prompt)).input_ids)

    def encode(self, prompts: list[str], text_len: int = 512, *,
               attention: str = REFERENCE_ATTENTION) -> Tensor:
        """[B, text_len, d_model]: rows past each prompt's tokens (EOS included) exactly zero.

        `attention`: REFERENCE_ATTENTION (the release's numbers) or FAST_ATTENTION (SDPA)."""
        return self.encode_counted(prompts, text_len, attention=attention)[0]

    def encode_counted(self, prompts: list[str], text_len: int = 512, *,
                       attention: str = REFERENCE_ATTENTION
                       ) -> tuple[Tensor, list[PromptTokens]]:
        """`encode`'s [B, text_len, d_model], and each prompt's tokens: how many it has and how
        many were encoded (a prompt past text_len is truncated, as the release does)."""
        if self.model.config._attn_implementation != attention:
            self.model.set_attn_implementation(attention)
        cleaned = [clean_prompt(p) for p in prompts]
        batch = self.tokenizer(
            cleaned, padding="max_length", max_length=text_len, truncation=True,
            add_special_tokens=True, return_attention_mask=True, return_tensors="pt",
        )
        # The whole prompt's length, counted apart: the truncated batch cannot tell a prompt of
        # exactly text_len tokens from a longer one. verbose=False: the count is the report.
        counts = [len(ids) for ids in self.tokenizer(cleaned, verbose=False).input_ids]
        kept = batch.attention_mask.sum(dim=1).tolist()
        tokens = [PromptTokens(count=n, kept=k) for n, k in zip(counts, kept, strict=True)]
        device = next(self.model.parameters()).device
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        # a `with`, not the decorator: the mutation run (mutmut) skips decorated functions
        with torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            # §5.4: keep rows 0..n-1 (n = the mask's ones) and zero the rest; no mask is passed
            # downstream. By position, as the release slices: with a tokenizer configured to pad
            # on the left the release keeps the first n rows too (padding rows), and so do we.
            n = mask.sum(dim=1, keepdim=True)
            first_n = torch.arange(mask.shape[1], device=device).unsqueeze(0) < n
            return hidden.masked_fill(~first_n.unsqueeze(-1), 0.0), tokens
