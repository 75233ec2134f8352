"""What the library's "Is this NAME?" suggestions do (issue 24): people start with one enrolment
photo, the user answers suggestions, and the library names more of their photos.

Sets (``facerec.datasets.person_split`` halves, so no person measured here was seen by tuning):

* ``lfw``: lfw_dev's ``test`` half. Enrolled: up to ``--people`` (40) of its people with at least
  ``--min-photos`` (8) photos, a seeded choice; each is enrolled with one photo (a seeded choice;
  the next one in that order when no face is found), through ``facerec.people.People.enroll``
  (with the largest face; a concern is recorded, then confirmed: it is their photo). Their other
  photos (at most ``--max-photos`` (24), seeded) go into the library. Strangers: people of the
  same half with 1-2 photos, a seeded choice of whole people until they have at least as many
  photos as the enrolled people's library photos; all their photos go into the library too.
  The labelled face of a photo is the face nearest the photo's centre (LFW centres the person),
  within a quarter of the photo's side; every other face is a bystander.
* ``celeba``: celeba_dev's ``test`` half; enrolled: its people with at least ``--min-photos``
  photos (13); strangers: the ``train`` half and the test half's smaller people (celeba_dev has
  only one person with 1-2 photos), 224 photos: fewer than the enrolled people's 273 library
  photos, all there are. The labelled face is the largest face (uncropped photos).

Protocol (default settings: base mobilefacenet, yunet, calibrated threshold): a throw-away
gallery, cache and tag cache; the photos copied into one library folder under neutral names;
``Library.scan`` once. Then answers, round-robin over the people (one answer per person per
turn): the person's top suggestion (``Library.suggestions(name)[0]``) is confirmed
(``Library.confirm``) when it truly is their labelled face, else rejected (``Library.reject``).
A person with no suggestion left skips the turn. Reported after 0, 5 and 20 answers per person
(``--rounds``), over the library's faces (``Library.faces()``):

* ``named_right``: share of the enrolled people's library photos whose labelled face is named as
  that person (kind ``match`` or ``confirmed``), also split into ``named_right_confirmed``
  (the user's own answers) and ``named_right_match`` (the matcher, from the enrolment photos plus
  the confirmed faces that were enrolled);
* ``named_wrong``: named as another person; ``no_face``: the labelled face was not found;
* ``possible_match``: shown as "NAME?" (unnamed; offered as a suggestion for NAME);
* ``strangers_named``: share of the strangers' photos whose labelled face is named as anyone
  (``strangers_possible_match``: shown as someone's possible match);
* ``bystanders_named``: other faces named as anyone (count);
* answers so far: confirmations enrolled, confirmations refused by the enrolment checks (named
  but not enrolled; reasons counted), rejections, turns with no suggestion.

(Before 0.9 ``confirm`` refused to enrol a confirmed face as "does not look like NAME's other
photos", which every suggestion under the threshold is: results/suggestions_0.8.json.)

    nice -n 10 .venv/bin/python benchmarks/suggestions.py [--sets lfw celeba] [--people 40]
        [--rounds 0 5 20] [--json benchmarks/results/suggestions.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def pick_sets(shared: Path, set_name: str, people: int, min_photos: int, seed: int):
    """``(enrolled {folder name: its photos in a seeded order}, every person's photos {folder name: photos},
    the stranger candidates in a seeded order)`` for one set (see the module docstring)."""
    from facerec.datasets import labelled_photos, person_split

    rng = np.random.default_rng(seed)
    folder = "lfw_dev" if set_name == "lfw" else "celeba_dev"
    by_person: dict[str, list[Path]] = collections.defaultdict(list)
    for path, name in labelled_photos(shared / folder):
        by_person[name].append(path)
    test = sorted(n for n in by_person if person_split(n) == "test")
    eligible = [n for n in test if len(by_person[n]) >= min_photos]
    chosen = sorted(rng.choice(eligible, size=min(people, len(eligible)), replace=False).tolist())
    enrolled = {n: [by_person[n][i] for i in rng.permutation(len(by_person[n]))] for n in chosen}
    if set_name == "lfw":
        pool = [n for n in test if len(by_person[n]) <= 2]
    else:
        pool = [n for n in by_person if person_split(n) == "train"] + [n for n in test if n not in chosen]
    return enrolled, by_person, [pool[i] for i in rng.permutation(len(pool))]


def display_name(set_name: str, folder_name: str) -> str:
    return folder_name.replace("_", " ") if set_name == "lfw" else f"celeb {folder_name}"


def labelled_faces(faces, sizes: dict, rule: str) -> dict:
    """``{photo: index of its labelled face or None}``."""
    by_photo = collections.defaultdict(list)
    for f in faces:
        by_photo[f.path].append(f)
    out = {}
    for path, fs in by_photo.items():
        if rule == "centre":
            w, h = sizes[path]
            cx, cy = w / 2, h / 2
            dist = [np.hypot(f.box[0] + f.box[2] / 2 - cx, f.box[1] + f.box[3] / 2 - cy) for f in fs]
            i = int(np.argmin(dist))
            out[path] = fs[i].idx if dist[i] <= min(w, h) / 4 else None
        else:
            out[path] = max(fs, key=lambda f: f.box[2] * f.box[3]).idx
    return out


def run_set(set_name: str, args) -> dict:
    from PIL import Image

    from facerec.errors import ConfirmationNeededError, FaceRecError
    from facerec.library import CONFIRMED, Library
    from facerec.people import People
    from facerec.pipeline import FaceRecognizer
    from facerec.settings import Settings, default_cache_dir
    from facerec.tagcache import TagCache

    t_set = time.time()
    enrolled_all, by_person, stranger_pool = pick_sets(args.shared, set_name, args.people, args.min_photos,
                                                       args.seed)
    work = Path(tempfile.mkdtemp(prefix=f"facerec_suggestions_{set_name}_"))
    try:
        cache = work / "cache"
        cache.mkdir()
        weights = default_cache_dir() / "weights"
        if weights.is_dir():
            (cache / "weights").symlink_to(weights)
        settings = Settings(gallery=work / "gallery", cache_dir=cache)
        rec = FaceRecognizer(settings)
        people = People(rec)

        # enrolment: one photo each
        enrol_log, library_of = [], {}
        t0 = time.time()
        for folder_name, photos in enrolled_all.items():
            name = display_name(set_name, folder_name)
            done = None
            for j, p in enumerate(photos):
                data = p.read_bytes()
                try:
                    people.enroll(name, data, p.name, largest=True)
                    done = (j, None)
                except ConfirmationNeededError as exc:
                    people.enroll(name, data, p.name, largest=True, confirm=True)
                    done = (j, " ".join(exc.concerns))
                except FaceRecError as exc:
                    enrol_log.append({"person": name, "photo": p.name, "skipped": f"{type(exc).__name__}: {exc}"})
                    continue
                break
            if done is None:
                enrol_log.append({"person": name, "not_enrolled": True})
                continue
            j, concern = done
            if concern:
                enrol_log.append({"person": name, "photo": photos[j].name, "confirmed_concern": concern})
            rest = [q for k, q in enumerate(photos) if k != j][:args.max_photos]
            library_of[name] = rest
        enrol_seconds = time.time() - t0
        n_enrolled_photos = sum(len(v) for v in library_of.values())
        strangers, n_str = {}, 0
        for s in stranger_pool:
            if n_str >= n_enrolled_photos:
                break
            strangers[s] = by_person[s]
            n_str += len(by_person[s])

        # the library folder: neutral names, truth kept here
        lib_dir = work / "photos"
        lib_dir.mkdir()
        truth, sizes, is_stranger = {}, {}, {}
        k = 0
        for owner, photos, stranger in ([(n, ps, False) for n, ps in library_of.items()]
                                        + [(display_name(set_name, s), ps, True) for s, ps in strangers.items()]):
            for p in photos:
                dst = lib_dir / f"p{k:05d}{p.suffix.lower()}"
                k += 1
                shutil.copyfile(p, dst)
                truth[dst.resolve()] = owner
                is_stranger[dst.resolve()] = stranger
                with Image.open(p) as im:
                    sizes[dst.resolve()] = im.size
        library = Library(rec)
        tags = TagCache(work / "tags.sqlite")
        try:
            library.add_folder(lib_dir, [work])
            t0 = time.time()
            report = library.scan(tags)
            scan_seconds = time.time() - t0
            print(f"[{set_name}] {len(library_of)} people enrolled, "
                  f"{n_enrolled_photos} of their photos + {n_str} stranger photos ({len(strangers)} people); "
                  f"scan {scan_seconds:.0f} s ({report.processed} processed, {len(report.failed)} failed); "
                  f"threshold {library.threshold():.4f}", file=sys.stderr, flush=True)
            faces0 = library.faces()
            label = labelled_faces(faces0, sizes, "centre" if set_name == "lfw" else "largest")

            def truth_of(face) -> str:
                p = face.path.resolve()
                return truth[p] if label.get(p) == face.idx else "(bystander)"

            answers = collections.Counter()
            refused_why = collections.Counter()
            suggestion_log = []

            def measure(after: int) -> dict:
                faces = library.faces()
                at = {(f.path.resolve(), f.idx): f for f in faces}
                c = collections.Counter()
                per_person_right = collections.Counter()
                for p, owner in truth.items():
                    i = label.get(p)
                    f = at.get((p, i)) if i is not None else None
                    group = "stranger" if is_stranger[p] else "enrolled"
                    c[f"{group}_photos"] += 1
                    if f is None:
                        c[f"{group}_no_face"] += 1
                    elif f.named:
                        if group == "stranger":
                            c["stranger_named"] += 1
                            c[f"stranger_named_{f.kind}"] += 1
                        elif f.name == owner:
                            c["right"] += 1
                            c[f"right_{f.kind}"] += 1
                            per_person_right[owner] += 1
                        else:
                            c["wrong"] += 1
                            c[f"wrong_{f.kind}"] += 1
                    elif f.kind == "possible match":
                        c[f"{group}_possible"] += 1
                bystanders = [f for f in faces if label.get(f.path.resolve()) != f.idx]
                n_e, n_s = c["enrolled_photos"], c["stranger_photos"]
                shares = [per_person_right[n] / len(ps) for n, ps in library_of.items()]
                row = {
                    "answers_per_person": after,
                    "named_right": round(c["right"] / n_e, 4),
                    "named_right_confirmed": round(c[f"right_{CONFIRMED}"] / n_e, 4),
                    "named_right_match": round(c["right_match"] / n_e, 4),
                    "named_wrong": round(c["wrong"] / n_e, 4),
                    "named_wrong_confirmed": round(c[f"wrong_{CONFIRMED}"] / n_e, 4),
                    "possible_match": round(c["enrolled_possible"] / n_e, 4),
                    "no_face": round(c["enrolled_no_face"] / n_e, 4),
                    "strangers_named": round(c["stranger_named"] / n_s, 4),
                    "strangers_named_confirmed": round(c[f"stranger_named_{CONFIRMED}"] / n_s, 4),
                    "strangers_possible_match": round(c["stranger_possible"] / n_s, 4),
                    "strangers_no_face": round(c["stranger_no_face"] / n_s, 4),
                    "bystanders": len(bystanders),
                    "bystanders_named": sum(f.named for f in bystanders),
                    "named_right_per_person_median": round(float(np.median(shares)), 4),
                    "people_half_or_more_named": sum(s >= 0.5 for s in shares),
                    "confirmed_enrolled": answers["confirmed_enrolled"],
                    "confirmed_refused": answers["confirmed_refused"],
                    "rejected": answers["rejected"],
                    "no_suggestion_turns": answers["none"],
                    "refused_because": dict(refused_why.most_common()),
                    "gallery_photos": len(people.photos()),
                    "threshold": round(library.threshold(), 4),
                    "counts": {"enrolled_photos": n_e, "right": c["right"], "wrong": c["wrong"],
                               "stranger_photos": n_s, "strangers_named": c["stranger_named"]},
                }
                print(f"[{set_name}] after {after}: right {100 * row['named_right']:.1f}% "
                      f"(confirmed {100 * row['named_right_confirmed']:.1f}, match {100 * row['named_right_match']:.1f}), "
                      f"wrong {100 * row['named_wrong']:.1f}%, strangers named {100 * row['strangers_named']:.1f}%, "
                      f"answers {answers['confirmed_enrolled']}+{answers['confirmed_refused']} yes / "
                      f"{answers['rejected']} no / {answers['none']} none, thr {row['threshold']}, "
                      f"{time.time() - t_set:.0f} s, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
                return row

            rounds = sorted(set(args.rounds))
            rows = [measure(0)] if 0 in rounds else []
            t0 = time.time()
            answer_seconds = []
            for turn in range(1, max(rounds) + 1):
                for name in library_of:
                    t1 = time.perf_counter()
                    offered = library.suggestions(name, limit=1)
                    if not offered:
                        answers["none"] += 1
                        continue
                    s = offered[0]
                    real = truth_of(s.face)
                    if real == name:
                        why = library.confirm(s.face, name)
                        if why is None:
                            answers["confirmed_enrolled"] += 1
                        else:
                            answers["confirmed_refused"] += 1
                            refused_why[why.split(" (")[0].replace(name, "NAME")] += 1
                        action = "yes"
                    else:
                        library.reject(s.face, name)
                        answers["rejected"] += 1
                        action = "no"
                    answer_seconds.append(time.perf_counter() - t1)
                    suggestion_log.append((turn, action, s.face.kind, round(s.score, 4),
                                           "stranger" if real != "(bystander)" and is_stranger[s.face.path.resolve()]
                                           else ("bystander" if real == "(bystander)" else
                                                 ("self" if real == name else "other enrolled"))))
                if turn in rounds:
                    rows.append(measure(turn))
            answer_time = time.time() - t0
        finally:
            tags.close()
            library.close()
        by_turn = collections.defaultdict(collections.Counter)
        for turn, action, kind, score, who in suggestion_log:
            by_turn["yes" if action == "yes" else who][kind] += 1
        precision = [sum(1 for t, a, *_ in suggestion_log if t == turn and a == "yes")
                     / max(1, sum(1 for t, *_ in suggestion_log if t == turn)) for turn in range(1, max(rounds) + 1)]
        return {
            "set": set_name,
            "enrolled_people": len(library_of), "enrolled_library_photos": n_enrolled_photos,
            "stranger_people": len(strangers), "stranger_photos": n_str,
            "people": sorted(library_of), "enrolment_notes": enrol_log,
            "scan": {"photos": report.photos, "processed": report.processed, "failed": len(report.failed),
                     "faces": len(faces0), "photos_without_labelled_face": sum(v is None for v in label.values())
                     + len(truth) - len(label), "seconds": round(scan_seconds, 1)},
            "rounds": rows,
            "answered_suggestions_by_kind": {k: dict(v) for k, v in by_turn.items()},
            "share_of_yes_by_turn": [round(x, 3) for x in precision],
            "seconds": {"enrol": round(enrol_seconds, 1), "scan": round(scan_seconds, 1),
                        "answers": round(answer_time, 1),
                        "per_answer_median": round(float(np.median(answer_seconds)), 3) if answer_seconds else None,
                        "total": round(time.time() - t_set, 1)},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "faces")
    ap.add_argument("--sets", nargs="+", choices=["lfw", "celeba"], default=["lfw", "celeba"])
    ap.add_argument("--people", type=int, default=40)
    ap.add_argument("--min-photos", type=int, default=8)
    ap.add_argument("--max-photos", type=int, default=24, help="library photos per enrolled person at most")
    ap.add_argument("--rounds", type=int, nargs="+", default=[0, 5, 20])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "suggestions.json")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    t0 = time.time()
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"], check=False, capture_output=True, text=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", []
    results = []
    for s in args.sets:
        results.append(run_set(s, args))
    from facerec.settings import Settings

    st = Settings()
    doc = {"issue": 24, "protocol": __doc__.split("\n\n")[1:4],
           "settings": {"backbone": st.backbone, "detector": st.detector, "threshold": "calibrated"},
           "results": results,
           "command": "benchmarks/suggestions.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "commit": commit, "modified_tracked_files": [d.strip() for d in dirty if d.strip()],
           "seconds": round(time.time() - t0, 1), "loadavg_before": [round(x, 2) for x in load_before],
           "loadavg_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
