#!/usr/bin/env python3
"""How a model answers niah_multivalue: reads the JSONL that `proxykv eval --answers` writes and prints, per file,

- found 1/2/3/4: answers holding that many of the expected numbers (string_match_all needs all of them);
- missed by fact: for each expected number (in context order: 0 = the key's first fact), the answers without it;
- first written: which fact's number the answer writes first (`other`: none of the key's numbers);
- one number only: answers that stop after one number, and after which fact's number they stop;
- numbers written: per answer, the mean count, the share that are one of the key's numbers, and the mean count of
  repeats (a number already written in the same answer);
- all in the first N: answers whose first N numbers (N = the key's count) are exactly the key's numbers. The
  decoding budget (48 tokens) fits ~9 numbers, so an answer that walks the key's facts with repeats can hold all
  of them without tracking which it wrote; this row counts only answers that did.

An answer is "kA is N and N and ...": the numbers are what follows " is ", split at " and ". Only rows of the task
niah_multivalue are read. The expected numbers of the task files are in context order (make-tasks writes them so).

usage: python3 bench/multivalue_answers.py ANSWERS.jsonl [...]
"""
import json
import sys
from collections import Counter


def summarise(path):
    found, missed, first, single = Counter(), Counter(), Counter(), Counter()
    n = written = of_key = repeats = exact = 0
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if row["task"] != "niah_multivalue":
                continue
            n += 1
            expected, output = row["answers"], row["output"]
            found[sum(1 for a in expected if a in output)] += 1
            for i, a in enumerate(expected):
                if a not in output:
                    missed[i] += 1
            numbers = output.split(" is ", 1)[-1].split(" and ")
            which = expected.index(numbers[0]) if numbers[0] in expected else "other"
            first[which] += 1
            if len(numbers) == 1:
                single[which] += 1
            written += len(numbers)
            of_key += sum(1 for x in numbers if x in expected)
            repeats += len(numbers) - len(set(numbers))
            exact += sorted(numbers[:len(expected)]) == sorted(expected)
    facts = max((len(json.loads(l)["answers"]) for l in open(path)), default=0)
    idx = range(facts)
    print(f"{path}: {n} multivalue answers")
    print("  found 1..%d:       %s" % (facts, " / ".join(str(found[k]) for k in range(1, facts + 1))))
    print("  missed by fact:   %s" % " / ".join(str(missed[i]) for i in idx))
    print("  first written:    %s (other %d)" % (" / ".join(str(first[i]) for i in idx), first["other"]))
    print("  one number only:  %d, after fact %s (other %d)"
          % (sum(single.values()), " / ".join(str(single[i]) for i in idx), single["other"]))
    if n:
        print("  numbers written:  %.1f per answer, %.2f of them the key's, %.1f repeats per answer"
              % (written / n, of_key / max(written, 1), repeats / n))
        print("  all in the first %d: %d" % (facts, exact))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        summarise(path)


if __name__ == "__main__":
    main()
