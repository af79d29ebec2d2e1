"""Helper for score-vs-lmms-eval.sh: writes a synthetic 5,000-question TextVQA set and times
lmms-eval's own TextVQA scorer on it.

Only lmms-eval's scoring modules are loaded (tasks/textvqa/utils.py and
tasks/_task_utils/vqa_eval_metric.py), with the `lmms_eval.tasks` package stubbed so that its
heavy __init__ (models, datasets, torch) is not imported. The pipeline reproduced is what
lmms-eval runs per document: strip the generation (api/task.py), textvqa_process_results, then
the `mean` aggregation (api/metrics.py: sum(arr) / len(arr)).
"""

import copy
import importlib.util
import json
import os
import random
import sys
import time
import types

N = 5000
VOCAB = ["Coca-Cola", "the stop sign", "two", "10:30", "new york", "McDonald's", "yes", "no",
         "3.", "a,b", "EXIT", '"quoted"', "snake_case", "dont", "12%", "café", "only exit", "exit"]


def load_lmms_eval_scorer():
    spec = importlib.util.find_spec("lmms_eval")
    root = os.path.dirname(spec.origin)
    tasks = types.ModuleType("lmms_eval.tasks")
    tasks.__path__ = [os.path.join(root, "tasks")]
    sys.modules["lmms_eval.tasks"] = tasks
    from lmms_eval.tasks.textvqa import utils  # noqa: E402  (needs the stub above)
    return utils.textvqa_process_results, root


def generate(out_dir):
    rng = random.Random(20260807)
    data, preds = [], []
    for i in range(N):
        answers = [rng.choice(VOCAB[:4]) if rng.random() < 0.5 else rng.choice(VOCAB) for _ in range(10)]
        if rng.random() < 0.5:
            pred = rng.choice(answers).upper()
        else:
            pred = rng.choice(VOCAB)
        if rng.random() < 0.1:
            pred = "  " + pred + "\n"
        data.append({"question_id": 34602 + i, "question": "what is written?", "image_id": "%016x" % i,
                     "answers": answers, "set_name": "val"})
        preds.append({"question_id": 34602 + i, "prediction": pred})
    ann = os.path.join(out_dir, "TextVQA_0.5.1_val.json")
    with open(ann, "w") as f:
        json.dump({"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data}, f)
    pp = os.path.join(out_dir, "predictions.jsonl")
    with open(pp, "w") as f:
        for p in preds:
            f.write(json.dumps(p) + "\n")
    return ann, pp


def lmms_eval_score(process_results, ann_path, pred_path):
    with open(ann_path) as f:
        docs = json.load(f)["data"]
    with open(pred_path) as f:
        preds = {}
        for line in f:
            p = json.loads(line)
            preds[p["question_id"]] = p["prediction"]
    scores = []
    for doc in docs:
        doc = copy.copy(doc)
        doc["answers"] = list(doc["answers"])  # process_results normalises answers in place
        scores.append(process_results(doc, [preds[doc["question_id"]].strip()])["exact_match"])
    return sum(scores) / len(scores)


def main():
    out_dir = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    process_results, root = load_lmms_eval_scorer()
    ann, pp = generate(out_dir)
    times, score = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        score = lmms_eval_score(process_results, ann, pp)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"annotations": ann, "predictions": pp, "lmms_eval_root": root,
                      "score_repr": repr(score), "median_s": times[len(times) // 2], "times_s": times}))


if __name__ == "__main__":
    main()
