#!/usr/bin/python3
"""Parity fixtures for the real Wan 2.1 pipeline: runs Wan 2.1's own code and writes what it gives
to tests/fixtures/wan/, which the model tests compare our C++ with (docs/wan.md).

    scripts/wan_fixtures.py WAN_CHECKOUT COMMIT    # github.com/Wan-Video/Wan2.1 at COMMIT

A tool, never run by the build or the tests: it needs Debian's python3-torch
(scripts/install-deps.sh --tools) and a checkout of the official repository, whose modules it
imports unchanged, file by file. Their package-level imports pull in libraries Debian lacks
(diffusers for the scheduler's base classes): those few names are stubbed here with what the
scheduler uses of them (a config object holding the constructor's arguments), so the arithmetic
that runs is Wan's.

Fixtures (safetensors, float32, written without the safetensors package):
- unipc.safetensors: FlowUniPCMultistepScheduler sampling a fixed analytic velocity field
  v(x, t) = sin(x) / 2 + x (t / 1000)^2 - 0.3 from seeded noise, for several step counts,
  shifts and solver orders: the grid, the integer timesteps, the sample at every step and the
  result. Keys "CASE.sigmas", "CASE.timesteps", "CASE.inputs" [steps, n], "CASE.noise", "CASE.out"
  for CASE = "s{steps}_shift{shift}_order{order}".
- state_dict.pth (torch.save of a small state dict: float32, bf16, a view into another tensor's
  storage, a transposed view, a scalar), state_dict.safetensors (the same as float32), list.pth
  (not a dict), legacy.pth (the pre-1.6 format) and cut_pickle.pth (its pickle cut in half): what
  model/pth.h reads and refuses.
- umt5.pth and umt5.safetensors: Wan's T5Encoder (wan/modules/t5.py) at a reduced size, randomly
  initialised by its own init_weights: its state dict, two padded prompts' ids, lengths and
  outputs, and its relative-position bucket of every offset from -300 to 300.
- spiece.model and tokenizer.json: a small SentencePiece model in umT5's id layout and, for some
  prompts, Wan's cleaned text and the ids with </s> (tokenizer_case says what is stubbed).
- hostile_*.pth and hostile.json: hand-written pickles in torch.save's archive layout that a
  reader must refuse (hostile_pickles says which), and the words each refusal must contain.
"""
import collections
import importlib.util
import inspect
import json
import os
import struct

import regex
import sys
import types
import zipfile

import torch

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "wan")


def stub_diffusers():
    """The names fm_solvers_unipc.py imports from diffusers, as far as it uses them."""

    class Config(types.SimpleNamespace):
        pass

    def register_to_config(init):
        def wrapped(self, *args, **kwargs):
            bound = inspect.signature(init).bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.config = Config(**{k: v for k, v in bound.arguments.items() if k != "self"})
            init(self, *args, **kwargs)

        return wrapped

    class ConfigMixin:
        def register_to_config(self, **kwargs):
            for k, v in kwargs.items():
                setattr(self.config, k, v)

    class SchedulerMixin:
        pass

    class SchedulerOutput(types.SimpleNamespace):
        pass

    modules = {
        "diffusers": {},
        "diffusers.configuration_utils": {"ConfigMixin": ConfigMixin, "register_to_config": register_to_config},
        "diffusers.schedulers": {},
        "diffusers.schedulers.scheduling_utils": {
            "KarrasDiffusionSchedulers": [],
            "SchedulerMixin": SchedulerMixin,
            "SchedulerOutput": SchedulerOutput,
        },
        "diffusers.utils": {"deprecate": lambda *a, **k: None, "is_scipy_available": lambda: False},
    }
    for name, names in modules.items():
        m = types.ModuleType(name)
        m.__dict__.update(names)
        sys.modules[name] = m


def load(checkout, relative, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(checkout, relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_safetensors(path, tensors, metadata):
    """The format as io/safetensors.h reads it: header length, JSON header, packed data."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(tmp, path)


def velocity(x, t):
    return torch.sin(x) / 2 + x * (t / 1000.0) ** 2 - 0.3


def unipc_cases(unipc):
    tensors = {}
    for steps, shift, order in [(1, 5.0, 2), (2, 5.0, 2), (5, 5.0, 2), (12, 3.0, 2), (50, 5.0, 2), (9, 8.0, 3)]:
        case = f"s{steps}_shift{shift:g}_order{order}"
        scheduler = unipc.FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=1,
                                                      use_dynamic_shifting=False, solver_order=order)
        scheduler.set_timesteps(steps, device="cpu", shift=shift)
        noise = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(steps))
        x, inputs = noise.clone(), []
        for t in scheduler.timesteps:  # as wan/text2video.py steps it
            inputs.append(x.flatten().clone())
            v = velocity(x, float(t))
            x = scheduler.step(v.unsqueeze(0), t, x.unsqueeze(0), return_dict=False)[0].squeeze(0)
        tensors[case + ".sigmas"] = scheduler.sigmas.to(torch.float32)
        tensors[case + ".timesteps"] = scheduler.timesteps.to(torch.float32)
        tensors[case + ".noise"] = noise
        tensors[case + ".inputs"] = torch.stack(inputs)
        tensors[case + ".out"] = x
    return tensors


def pth_cases():
    """torch.save files as the release's .pth are written (a state dict in the zip format), with a
    bf16 tensor, a view into another tensor's storage and a transposed one; the same tensors as
    float32 safetensors; a list instead of a dict; and the legacy (pre-1.6) format."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 4, generator=g)
    sd = collections.OrderedDict()
    sd["blocks.0.weight"] = torch.randn(3, 4, generator=g)
    sd["blocks.0.bias"] = torch.randn(5, generator=g).to(torch.bfloat16)
    sd["shared.rows"] = base[2:5]
    sd["shared.t"] = base.t()
    sd["scale"] = torch.tensor(2.5)
    torch.save(sd, os.path.join(here, "state_dict.pth"))
    torch.save([base], os.path.join(here, "list.pth"))
    torch.save(sd, os.path.join(here, "legacy.pth"), _use_new_zipfile_serialization=False)
    # A well-formed archive whose pickle stops halfway, as a write cut off would leave it.
    with zipfile.ZipFile(os.path.join(here, "state_dict.pth")) as z, \
            zipfile.ZipFile(os.path.join(here, "cut_pickle.pth"), "w", zipfile.ZIP_STORED) as out:
        for name in z.namelist():
            data = z.read(name)
            out.writestr(name, data[:len(data) // 2] if name.endswith("data.pkl") else data)
    return {k: v.float() for k, v in sd.items()}


def hostile_pickles():
    """Archives laid out as torch.save lays them out whose data.pkl is hand-written to attack a
    reader: a dict that holds itself, tuples nested 100 deep, dicts that each hold the one below
    twice (2^30 paths), a tensor reaching past its storage, a storage whose record is missing.
    hostile.json maps each file to the words its refusal must contain."""
    def archive(name, pickle, records=None):
        with zipfile.ZipFile(os.path.join(here, name), "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", pickle)
            for key, data in (records or {}).items():
                z.writestr("archive/data/" + key, data)
            z.writestr("archive/version", "3\n")

    def text(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    def tensor(key, numel, size):  # _rebuild_tensor_v2(storage, 0, (size,), (1,), False, {})
        return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + b"(" + text("storage") + b"ctorch\nFloatStorage\n" +
                text(key) + text("cpu") + b"K" + bytes([numel]) + b"tQ" + b"K\x00" + b"K" + bytes([size]) +
                b"\x85" + b"K\x01\x85" + b"\x89}tR")

    expected = {}
    archive("hostile_cycle.pth", b"\x80\x02}q\x00" + text("a") + b"h\x00s.")
    expected["hostile_cycle.pth"] = "a container that holds itself"
    archive("hostile_deep.pth", b"\x80\x02)" + b"\x85" * 100 + b".")
    expected["hostile_deep.pth"] = "containers nest deeper than 64"
    dag = b"\x80\x02}q\x00"
    for i in range(1, 31):
        dag += b"}(" + text("a") + b"h" + bytes([i - 1]) + text("b") + b"h" + bytes([i - 1]) + b"uq" + bytes([i])
    archive("hostile_dag.pth", dag + b".")
    expected["hostile_dag.pth"] = "more than 4194304 entries"
    floats = struct.pack("<2f", 1.0, 2.0)
    archive("hostile_past.pth", b"\x80\x02}(" + text("w") + tensor("0", 2, 4) + b"u.", {"0": floats})
    expected["hostile_past.pth"] = "a tensor that reaches past its storage"
    archive("hostile_record.pth", b"\x80\x02}(" + text("w") + tensor("9", 2, 2) + b"u.", {"0": floats})
    expected["hostile_record.pth"] = "the archive has no record data/9"
    with open(os.path.join(here, "hostile.json"), "w") as f:
        json.dump(expected, f, indent=1)


def umt5_case(checkout):
    """Wan's T5Encoder (wan/modules/t5.py, umT5's shape: no shared position bias) at a reduced
    size with its own random initialisation, on two padded prompts (150 and 7 real tokens of 160,
    so the logarithmic buckets and their clamp are reached); its state dict as torch.save writes
    it, and its outputs and bucket table."""
    package = types.ModuleType("wanmods")
    package.__path__ = []
    tokenizers = types.ModuleType("wanmods.tokenizers")
    tokenizers.HuggingfaceTokenizer = None  # t5.py imports it; the encoder never uses it
    sys.modules.update({"wanmods": package, "wanmods.tokenizers": tokenizers})
    # T5EncoderModel's default argument asks for the current CUDA device when the class is
    # defined; Debian's torch has no CUDA, so it gets the CPU for that one call.
    current_device, torch.cuda.current_device = torch.cuda.current_device, lambda: "cpu"
    try:
        t5 = load(checkout, "wan/modules/t5.py", "wanmods.t5")
    finally:
        torch.cuda.current_device = current_device
    torch.manual_seed(3)
    model = t5.T5Encoder(vocab=64, dim=32, dim_attn=32, dim_ffn=48, num_heads=4, num_layers=2, num_buckets=32,
                         shared_pos=False, dropout=0.1).eval()
    torch.save(model.state_dict(), os.path.join(here, "umt5.pth"))
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(2, 64, (2, 160), generator=g)
    lens = torch.tensor([150, 7])
    mask = torch.zeros(2, 160, dtype=torch.long)
    for i, n in enumerate(lens):
        ids[i, n - 1] = 1  # </s>
        ids[i, n:] = 0     # <pad>
        mask[i, :n] = 1
    with torch.no_grad():
        out = model(ids, mask)
    rel = torch.arange(-300, 301).unsqueeze(0)
    buckets = model.blocks[0].pos_embedding._relative_position_bucket(rel)[0]
    return {"umt5.ids": ids.float(), "umt5.lens": lens.float(), "umt5.out": out,
            "umt5.relative": rel[0].float(), "umt5.buckets": buckets.float()}


TOKENIZER_PROMPTS = [
    "A cat walks on the grass, realistic style.",
    "  Two   dogs\tplay &amp;amp; run\n on a beach at sunset  ",
    "a red circle &lt;moving&gt; left &#x41;&#66; &quot;fast&quot;",
    "静态，细节模糊不清 with words the model never saw: zyzzyva quixotic",
    "\u201cit\u2019s\u201d\u00a0a\u3000cat\uff0c\uff21 &nbsp;done",
    "",
]


def tokenizer_case(checkout):
    """A small SentencePiece model in umT5's id layout (pad 0, </s> 1, unk 2; no <s>), trained here,
    and what Wan's cleaning (wan/modules/tokenizers.py's basic_clean then whitespace_clean) and
    SentencePiece's own encoder make of some prompts, with </s> appended as the tokenizer does.
    Debian has neither ftfy nor transformers: ftfy.fix_text is stood in for by the two of its
    default fixes that these prompts meet (uncurl_quotes: curly quotes made straight;
    fix_character_width: fullwidth ASCII forms made ASCII, as ftfy documents them), and
    AutoTokenizer is not used. The SentencePiece model is trained once and kept (training is not
    reproducible byte for byte)."""
    import sentencepiece as spm
    def fix_text(text):
        text = "".join(chr(ord(c) - 0xFF01 + 0x21) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in text)
        return regex.sub("[\u02bc\u2018-\u201b]", "'", regex.sub("[\u201c-\u201f]", '"', text))

    sys.modules["ftfy"] = types.SimpleNamespace(fix_text=fix_text)
    sys.modules["transformers"] = types.SimpleNamespace(AutoTokenizer=None)
    tokenizers = load(checkout, "wan/modules/tokenizers.py", "wan_tokenizers")
    model = os.path.join(here, "spiece.model")
    corpus = os.path.join(here, "corpus.tmp")
    with open(corpus, "w") as f:
        for i in range(200):
            f.write(f"a cat walks on the grass {i} times, dogs play and run on a beach at sunset, "
                    "a red circle moving left fast, realistic style\n")
    if not os.path.exists(model):
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(here, "spiece"), vocab_size=60,
                                       model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                       character_coverage=1.0, minloglevel=2)
        os.remove(os.path.join(here, "spiece.vocab"))
    os.remove(corpus)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(here, "spiece.model"))
    cases = []
    for prompt in TOKENIZER_PROMPTS:
        clean = tokenizers.whitespace_clean(tokenizers.basic_clean(prompt))
        cases.append({"prompt": prompt, "clean": clean, "ids": sp.encode(clean) + [sp.eos_id()]})
    with open(os.path.join(here, "tokenizer.json"), "w") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    checkout, commit = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    stub_diffusers()
    unipc = load(checkout, "wan/utils/fm_solvers_unipc.py", "wan_fm_solvers_unipc")
    os.makedirs(here, exist_ok=True)
    meta = {"source": "github.com/Wan-Video/Wan2.1", "commit": commit, "torch": torch.__version__,
            "made_by": "scripts/wan_fixtures.py"}
    write_safetensors(os.path.join(here, "unipc.safetensors"), unipc_cases(unipc), meta)
    write_safetensors(os.path.join(here, "state_dict.safetensors"), pth_cases(), meta)
    write_safetensors(os.path.join(here, "umt5.safetensors"), umt5_case(checkout), meta)
    tokenizer_case(checkout)
    hostile_pickles()
    print("wrote", here)


if __name__ == "__main__":
    main()
