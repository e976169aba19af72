#!/usr/bin/python3
"""The protocol corpus: the documented examples (schemas/examples/*.json) and broken
variants of them, as msgpack files, checked against the JSON Schemas here and
against the C codec by tests/unit/test_codec.c.

Writes OUTDIR/valid/*.msgpack, OUTDIR/invalid/*.msgpack and OUTDIR/invalid.tsv
(name <TAB> text the codec's error must contain <TAB> job id the codec must still
recover, or "-"). Every valid message must pass the schemas and every invalid one
that is a readable msgpack map must fail them: the codec and the schemas agree.
JSON view <-> msgpack: inside a matrix map ({"shape", "dtype", "data"}), "data" is
msgpack bin, base64 in the JSON view.
usage: /usr/bin/python3 protocol_corpus.py SCHEMA_DIR OUTDIR
"""
import base64
import copy
import json
import pathlib
import struct
import sys

import msgpack
from jsonschema import Draft202012Validator, RefResolver


def to_wire(obj):
    """JSON view -> msgpack-ready Python (matrix data: base64 -> bytes)."""
    if isinstance(obj, dict):
        out = {k: to_wire(v) for k, v in obj.items()}
        if "shape" in obj and isinstance(obj.get("data"), str):
            out["data"] = base64.b64decode(obj["data"])
        return out
    if isinstance(obj, list):
        return [to_wire(v) for v in obj]
    return obj


def to_view(obj):
    """msgpack-decoded Python -> JSON view (bytes -> base64)."""
    if isinstance(obj, dict):
        return {k: to_view(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_view(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(obj).decode()
    return obj


def validators(schema_dir):
    store = {}
    for p in pathlib.Path(schema_dir).glob("*.schema.json"):
        s = json.loads(p.read_text())
        Draft202012Validator.check_schema(s)
        store[s["$id"]] = s
    base = "https://maas.example/schemas/"
    def make(name):
        s = store[base + name]
        return Draft202012Validator(s, resolver=RefResolver(base + name, s, store=store))
    return make("job.schema.json"), make("result.schema.json"), make("job-record.schema.json")


def main(schema_dir, out):
    out = pathlib.Path(out)
    (out / "valid").mkdir(parents=True, exist_ok=True)
    (out / "invalid").mkdir(parents=True, exist_ok=True)
    job_v, result_v, record_v = validators(schema_dir)
    examples = {}
    for p in sorted((pathlib.Path(schema_dir) / "examples").glob("*.json")):
        examples[p.stem] = json.loads(p.read_text())
    problems = []
    n_valid = 0
    for name, ex in examples.items():
        v = result_v if name.startswith("result-") else job_v
        errs = list(v.iter_errors(ex))
        if errs:
            problems.append(f"example {name} fails its schema: {errs[0].message}")
        wire = msgpack.packb(to_wire(ex), use_bin_type=True)
        # round trip through msgpack and back to the JSON view is lossless
        if to_view(msgpack.unpackb(wire, raw=False)) != ex and "data" not in json.dumps(ex):
            problems.append(f"example {name} does not survive msgpack")
        (out / "valid" / f"{name}.msgpack").write_bytes(wire)
        n_valid += 1

    # Broken variants: (name, base example, mutation, codec error text, id recoverable)
    def drop(k):
        return lambda m: m.pop(k)
    def setf(path, value):
        def f(m):
            t = m
            for p in path[:-1]:
                t = t[p]
            t[path[-1]] = value
        return f
    bad_bytes = base64.b64encode(struct.pack("<7f", *range(7))).decode()
    cases = [
        ("no_id", "infer", drop("id"), "field id: missing", "-"),
        ("bad_id", "infer", setf(["id"], "a b{c}"), "field id", "-"),
        ("version_2", "infer", setf(["v"], 2), "protocol version 2 is not supported", "infer-0001"),
        ("no_version", "infer", drop("v"), "field v: missing", "infer-0001"),
        ("unknown_type", "infer", setf(["type"], "predict"), "unknown job type 'predict'", "infer-0001"),
        ("unknown_field", "train", setf(["epoch"], 3), "field epoch: unknown field", "train-pima-0001"),
        ("wrong_type", "train", setf(["epochs"], "10"), "field epochs: expected an integer", "train-pima-0001"),
        ("epochs_zero", "train", setf(["epochs"], 0), "field epochs: expected 1..", "train-pima-0001"),
        ("bad_loss", "train", setf(["loss"], "hinge"), "unknown loss 'hinge'", "train-pima-0001"),
        ("bad_activation", "train", setf(["layers", 0, "activation"], "swish"),
         "field layers[0].activation", "train-pima-0001"),
        ("no_units", "train", setf(["layers", 1], {"activation": "relu"}), "field layers[1].units: missing",
         "train-pima-0001"),
        ("train_alias", "train", setf(["model"], "pima@production"), "a train job names the model only",
         "train-pima-0001"),
        ("both_layers_keras", "train-keras", setf(["layers"], [{"units": 1}]), "give layers or keras_config",
         "train-keras-0001"),
        ("bad_keras", "train-keras", setf(["keras_config"], "{\"class_name\": \"Functional\", \"config\": {}}"),
         "Sequential models only", "train-keras-0001"),
        ("missing_inputs", "infer", drop("inputs"), "field inputs: missing", "infer-0001"),
        ("ragged_rows", "infer", setf(["inputs"], [[1, 2, 3], [4, 5]]), "field inputs[1]: expected a row of 3",
         "infer-0001"),
        ("bin_size", "infer-bin", setf(["inputs", "data"], bad_bytes),
         "field inputs.data: expected 32 bytes (1 x 8 float32), got 28", "infer-0002"),
        ("bad_dtype", "infer-bin", setf(["inputs", "dtype"], "float64"), "field inputs.dtype", "infer-0002"),
        ("string_cell", "infer", setf(["inputs", 0, 2], "72"), "field inputs[0][2]: expected a number",
         "infer-0001"),
        ("priority", "infer", setf(["priority"], 12), "field priority: expected 0..9", "infer-0001"),
        ("notify_type", "infer", setf(["notify"], "yes"), "field notify: expected true or false",
         "infer-0001"),
        ("xy_rows", "evaluate", setf(["data", "y"], [[1], [0]]), "field data.y: has 2 rows, x has 1",
         "eval-0001"),
        ("data_both", "train", setf(["data"], {"dataset": "d", "x": [[1]], "y": [[1]]}),
         "field data: give either dataset or x and y", "train-pima-0001"),
        ("explain_unknown", "infer-explain", setf(["explain"], "shap"), "field explain: unknown explanation 'shap'",
         "infer-0003"),
        ("steps_zero", "infer-explain", setf(["steps"], 0), "field steps: expected 1..4096", "infer-0003"),
        ("baseline_width", "infer-explain", setf(["baseline"], [[1, 2, 3]]),
         "field baseline: expected one row of 8 features, got 1x3", "infer-0003"),
        ("steps_without_ig", "infer-explain", setf(["explain"], "gradient_x_input"),
         "only with \"explain\": \"integrated_gradients\"", "infer-0003"),
        ("quantize_fp8", "optimize", setf(["quantize"], "fp8"),
         "field quantize: expected \"int8\" or \"bf16\"", "opt-0001"),
        ("optimize_nothing", "optimize", lambda m: (m.pop("quantize"), m.pop("prune")),
         "needs quantize or prune", "opt-0001"),
        ("bad_ref", "infer", setf(["model"], "pima:latest"), "version must be a number", "infer-0001"),
        ("monitor", "train-inline", setf(["early_stopping", "monitor"], "f1"),
         "field early_stopping.monitor", "train-xor-0001"),
    ]
    # What JSON Schema cannot express (equal row lengths, bin size = shape, x and y row
    # counts, the content of a keras_config string): the schemas accept these, the codec
    # must not. protocol.md lists them.
    semantic = {"bad_keras", "ragged_rows", "bin_size", "xy_rows", "baseline_width"}
    rows = []
    for name, base, mutate, text, rid in cases:
        m = copy.deepcopy(examples[base])
        mutate(m)
        if job_v.is_valid(m) != (name in semantic):
            problems.append(f"invalid case {name}: schema says valid={job_v.is_valid(m)}")
        wire = msgpack.packb(to_wire(m), use_bin_type=True)
        (out / "invalid" / f"{name}.msgpack").write_bytes(wire)
        rows.append((name, text, rid))
    # Cases only bytes can express (the schemas see decoded maps, so these are codec-only).
    good = msgpack.packb(to_wire(examples["infer"]), use_bin_type=True)
    raw = {
        "trailing_garbage": (good + b"\x00", "1 trailing bytes"),
        "truncated": (good[:-3], "not valid msgpack"),
        "not_a_map": (msgpack.packb([1, 2, 3]), "not a msgpack map"),
        "huge_count": (b"\x81\xa1x\xdd\xff\xff\xff\xff", "not valid msgpack"),
        "too_deep": (b"\x81\xa1x" + b"\x91" * 40 + b"\xc0", "nested deeper"),
        "reserved_byte": (b"\x81\xa1x\xc1", "not valid msgpack"),
        "empty": (b"", "is empty"),
        # the id is intact before what breaks the message: it is recovered, so the failure
        # gets a record a client polling that id can read
        "id_then_huge_bin": (b"\x83\xa1v\x01\xa2id\xa9salvage-1\xa6inputs\xc6\xff\xff\xff\xff",
                             "not valid msgpack"),
        "id_then_deep": (b"\x83\xa1v\x01\xa2id\xa9salvage-2\xa6inputs" + b"\x91" * 40 + b"\xc0",
                         "nested deeper"),
        "bad_id_then_truncated": (b"\x82\xa2id\xa4a{b}\xa6inputs\x92\x01", "not valid msgpack"),
        "nan_input": (msgpack.packb(to_wire({**examples["infer"], "inputs": [[float("nan")] * 8]}),
                                    use_bin_type=True), "field inputs[0][0]: is not finite"),
        "nan_bin": (msgpack.packb(to_wire({**examples["infer-bin"], "inputs": {
            "shape": [1, 8], "dtype": "float32",
            "data": base64.b64encode(struct.pack("<8f", 1, 2, 3, float("inf"), 5, 6, 7, 8)).decode()}}),
            use_bin_type=True), "field inputs: row 0, column 3 is not finite"),
    }
    for name, (wire, text) in raw.items():
        (out / "invalid" / f"{name}.msgpack").write_bytes(wire)
        rid = {"nan_input": "infer-0001", "nan_bin": "infer-0002", "trailing_garbage": "infer-0001",
               "truncated": "infer-0001", "id_then_huge_bin": "salvage-1",
               "id_then_deep": "salvage-2"}.get(name, "-")
        rows.append((name, text, rid))
    with open(out / "invalid.tsv", "w") as f:
        for r in rows:
            f.write("\t".join(r) + "\n")
    # the job record schema on a record as the Redis adapter writes it
    record = {"id": "infer-0001", "type": "infer", "model": "pima@production", "state": "succeeded",
              "attempts": 1, "worker": "w-1", "created_ms": 1795900000000, "started_ms": 1795900000003,
              "finished_ms": 1795900000009, "deadline_ms": 0, "ttl_s": 86400,
              "cost": {"cpu_s": 3.1e-05, "queue_s": 0.003, "compute_s": 3.3e-05, "flops": 180,
                       "peak_bytes": 40, "energy_j": 0.000186, "watts_per_core": 6,
                       "energy_method": "model"},
              "result": base64.b64encode(msgpack.packb(to_wire(examples["result-infer"]))).decode()}
    if not record_v.is_valid(record):
        problems.append("the sample job record fails job-record.schema.json")
    if record_v.is_valid({**record, "state": "done"}):
        problems.append("job-record.schema.json accepts state 'done'")
    if record_v.is_valid({**record, "attempts": "1"}):
        problems.append("job-record.schema.json accepts a number as a string (records are JSON)")
    if problems:
        sys.exit("protocol corpus:\n  " + "\n  ".join(problems))
    print(f"protocol corpus: {n_valid} valid examples pass the schemas; {len(cases) - len(semantic)} "
          f"broken variants fail them, {len(semantic)} need the codec's semantic checks; {len(raw)} "
          f"byte-level cases; written to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: protocol_corpus.py SCHEMA_DIR OUTDIR")
    main(sys.argv[1], sys.argv[2])
