#!/usr/bin/env python3
"""probe_var_recall.py MODEL_DIR [--n N] [--statements S] [--seed SEED] [--chains] [--bin DIR]

Dense reverse recall, the single hop of a variable_tracking chain (docs/training.md, the var-recall trial): each
prompt is `<bos>` then S statements `var kX = RHS .` forming interleaved chains (a chain starts `var kA = d d d d .`
and grows by `var kB = kA .`), `<sep>`, then one question `<q> which var equal RHS ? <a>`, the shape train-lm's
recall_template "var" draws (fresh prompts from Python's RNG here, not the trainer's). Prints each greedy answer
under the expected key and the count right. With --chains the question is a chain's number and the answer must be
the whole chain, joined by "and" (recall_var_chains). A probe of one skill, not the task accuracy: that comes from
`proxykv eval`.
"""
import argparse
import random
import subprocess


def prompt_and_answer(rng, statements, chains):
    keys = rng.sample(range(256), statements)
    ends, made, chain_of, words = [], [], [], ["<bos>"]
    for k in keys:
        key = f"k{k:03d}"
        if not ends or rng.random() < 0.3:
            rhs = [str(rng.randrange(10)) for _ in range(4)]
            ends.append(key)
            chain_of.append([key])
        else:
            i = rng.randrange(len(ends))
            rhs = [ends[i]]
            ends[i] = key
            chain_of[i].append(key)
        words += ["var", key, "="] + rhs + ["."]
        made.append((key, rhs))
    if chains:
        chain = rng.choice(chain_of)
        rhs = next(r for k, r in made if k == chain[0])
        want = " and ".join(chain)
    else:
        want, rhs = rng.choice(made)
    return " ".join(words + ["<sep>", "<q>", "which", "var", "equal"] + rhs + ["?", "<a>"]), want, rhs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--statements", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chains", action="store_true")
    ap.add_argument("--bin", default="build/bin")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    right = 0
    for _ in range(a.n):
        prompt, want, rhs = prompt_and_answer(rng, a.statements, a.chains)
        out = subprocess.run([f"{a.bin}/proxykv", "generate", "--model", a.model, "--prompt", prompt, "--max-tokens",
                              str(2 * a.statements + 2 if a.chains else 1), "--threads", "1"],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()
        got = out[-1].strip() if out else ""
        if a.chains:
            got = got.split("<eos>")[0].strip()
            ok = got == want
        else:
            ok = got.split()[:1] == [want]
        right += ok
        print(f"{'ok ' if ok else 'BAD'} want {want} (equal {' '.join(rhs)}) got {got}")
    print(f"{right}/{a.n} right ({a.statements} statements{', whole chains' if a.chains else ''})")


if __name__ == "__main__":
    main()
