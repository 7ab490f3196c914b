"""The frame → observations pipeline: detect, read plates, classify attributes, embed — batched per kind.

An Observation is a sighting before it has an id, a camera and a time: the
ingest service adds those and stores it. Models are loaded once per Pipeline.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.attributes import (
    PersonAttributeClassifier,
    VehicleAttributeClassifier,
    VehicleVote,
    describe_person,
    describe_vehicle,
    face_quality,
)
from models.colors import UNKNOWN, scene_cast, scene_lab, scene_lightness
from models.detectors import Detection, FaceDetector, ObjectDetector, SsdVehicleDetector, merge_detections, subject_face
from models.embedders import ConcatEmbedder, CropEmbedder, FaceEmbedder, person_embedder, vehicle_embedder
from models.heads import HeadSet, ObjectFeatures, check, color_features, load_active
from models.imageops import crop
from models.observations import FaceProbe, ObjectDescription, Observation, StageTimes
from models.plates import PlateReader, PlateReading, is_valid_plate
from models.records import Attributes, BBox, FaceAttributes, PersonAttributes, SightingKind, VehicleAttributes
from models.registry import default_model_dir, model_path
from models.tracking import Track
from models.vehicle_type import two_wheeler_in_frame


class Pipeline:
    """The real models, loaded once; implements models.observations.FramePipeline. Safe to call from several
    threads at once (each inference holds a request of its own, models/runtime.py)."""

    def __init__(self, model_dir: Path | None = None, faces: bool = True, faces_without_people: bool = False,
                 heads: bool = True):
        d = model_dir or default_model_dir()
        self.detector = ObjectDetector(model_path("yolox_nano.onnx", d))
        self.vehicle_detector = SsdVehicleDetector(model_path("vehicle-detection-0200.xml", d))
        self.plate_reader = PlateReader(d)
        self.vehicle_attributes = VehicleAttributeClassifier(
            model_path("vehicle-attributes-recognition-barrier-0039.xml", d))
        self.person_attributes = PersonAttributeClassifier(
            model_path("person-attributes-recognition-crossroad-0230.xml", d))
        self.vehicle_embedder = vehicle_embedder(d)
        self.person_embedder = person_embedder(d)
        # Learned attribute heads where the model folder has them (models/heads.py); else the rules answer. Training
        # and measuring the rules ask for none (`heads`), so that stale heads do not stop them.
        self.heads: dict[str, HeadSet | None] = {
            kind: load_active(d, kind, self._embedder(kind).version) if heads else None
            for kind in (SightingKind.VEHICLE, SightingKind.PERSON)}
        self.face_detector = FaceDetector(model_path("yunet_s_dynamic.onnx", d)) if faces else None
        self.face_embedder = FaceEmbedder() if faces else None
        self.faces_without_people = faces_without_people
        self.times = StageTimes()
        self._times_lock = threading.Lock()

    def process(self, frames: list[np.ndarray]) -> list[list[Observation]]:
        """Observations for each frame, in frame order; every model runs once per batch of crops."""
        t0 = time.perf_counter()
        detections = self.detect(frames)
        t1 = time.perf_counter()
        plates = self.plate_reader.read_frames(frames, tight=True)
        t2 = time.perf_counter()
        per_frame: list[list[Observation]] = []
        for frame, dets, frame_plates in zip(frames, detections, plates, strict=True):
            per_frame.append(self._objects(frame, dets, frame_plates))
        vehicles = [o for obs in per_frame for o in obs if o.kind == SightingKind.VEHICLE]
        people = [o for obs in per_frame for o in obs if o.kind == SightingKind.PERSON]
        self._embed(vehicles, self.vehicle_embedder)
        self._embed(people, self.person_embedder)
        t3 = time.perf_counter()
        self._classify(frames, per_frame, plates)  # after the vectors: the heads read them
        t4 = time.perf_counter()
        if self.face_detector is not None:
            for frame, obs in zip(frames, per_frame, strict=True):
                obs.extend(self._faces(frame, obs))
        t5 = time.perf_counter()
        with self._times_lock:  # ingest runs two batches at once: their times add up
            times = self.times
            times.detect += t1 - t0
            times.plates += t2 - t1
            times.embed += t3 - t2
            times.attributes += t4 - t3
            times.faces += t5 - t4
        return per_frame

    def detect(self, frames: list[np.ndarray], min_score: float | None = None) -> list[list[Detection]]:
        """People and vehicles: YOLOX-nano, plus the SSD vehicle detector for views YOLOX does not know."""
        general = self.detector.detect(frames, min_score)
        vehicles = self.vehicle_detector.detect(frames)
        return [merge_detections(g, v) for g, v in zip(general, vehicles, strict=True)]

    def detect_faces(self, frame: np.ndarray, objects: Sequence[Detection | Observation] | None = None
                     ) -> list[Detection]:
        """The frame's faces; given the objects detected in it, none are looked for unless a person is among them.

        YuNet costs ~8 ms a frame, most of it on frames of cars alone; on every eval set (283 frames: faces,
        scenes, person re-id, plates, 4 videos; 221 faces) no face was found in a frame without a detected person.
        A camera that sees faces the person detector misses (drivers behind a windscreen, say) can ask for every
        frame: `faces_without_people` (SIGHTLINE_FACES_WITHOUT_PEOPLE).
        """
        person_seen = objects is None or any(o.kind == SightingKind.PERSON for o in objects)
        if self.face_detector is None or not (person_seen or self.faces_without_people):
            return []
        return self.face_detector.detect(frame)

    def describe_object(self, image: np.ndarray, kind: str) -> ObjectDescription:
        """A cropped vehicle's colour, type and best plate read (not its vector: that is `embed_crops`'s)."""
        described = ObjectDescription()
        if kind == SightingKind.VEHICLE:
            # The photo is the vehicle: no detector class, the photo's own edges are the scene.
            attrs = VehicleAttributes()
            h, w = image.shape[:2]
            votes = self.vehicle_attributes.votes([image])
            describe_vehicle(attrs, votes[0], image,
                             scene_lightness(scene_lab(image), image.shape, BBox(0, 0, w, h)), None)
            self.redescribe([image], [attrs], kind, votes)
            # "unknown" is no evidence: a photo search must not count it against the sightings it ranks.
            described.vehicle_color = attrs.vehicle_color if attrs.vehicle_color != UNKNOWN else None
            described.vehicle_type = attrs.vehicle_type
            readings = [r for r in self.plate_reader.read_frames([image], vehicle_crops=True)[0] if r.text]
            described.plate = max(readings, key=lambda r: r.score).text if readings else None
        return described

    def embed_crops(self, crops: list[np.ndarray], kind: str) -> np.ndarray:
        return self._embedder(kind).embed(crops)

    def embedding_version(self, kind: str) -> str:
        return self._embedder(kind).version

    def _embedder(self, kind: str) -> CropEmbedder | ConcatEmbedder:
        """The model that embeds a vehicle or a person crop."""
        return self.vehicle_embedder if kind == SightingKind.VEHICLE else self.person_embedder

    def subject_face(self, frame: np.ndarray) -> FaceProbe | None:
        """The photo's largest, surest face with its vector (None: no face, or faces are switched off)."""
        if self.face_detector is None or self.face_embedder is None:
            return None
        best = subject_face(self.face_detector.detect(frame))
        if best is None:
            return None
        return FaceProbe(best.bbox, self.face_embedder.embed_faces(frame, [best.bbox])[0])

    def describe_tracks(self, tracks: list[Track], plate_views: int = 3) -> list[Observation]:
        """One observation per finished track, from its best frame; the plate is voted over its best views.

        This is where video saves its work: the attribute, plate and embedding models
        run on a track's best crops only, not on every frame it was seen in.
        """
        observations: list[Observation] = []
        frames: list[np.ndarray] = []  # the best frame of each vehicle or person observation, in order
        for track in tracks:
            best = track.best(1)[0]
            det = best.detection
            if track.kind == SightingKind.FACE:
                assert self.face_embedder is not None
                vector = self.face_embedder.embed_faces(best.frame, [det.bbox])[0]
                face_attrs = FaceAttributes(quality=face_quality(crop(best.frame, det.bbox), det),
                                            landmarks=[[round(x, 1), round(y, 1)] for x, y in det.landmarks])
                observations.append(Observation(SightingKind.FACE, det.bbox, det.score, face_attrs,
                                                crop(best.frame, det.bbox, 0.15),
                                                vector, self.face_embedder.space, None,
                                                {"embedding": self.face_embedder.version}))
                continue
            kind = SightingKind(track.kind)
            attrs = VehicleAttributes(coco_class=det.label) if kind == SightingKind.VEHICLE else PersonAttributes()
            ob = Observation(kind, det.bbox, det.score, attrs, crop(best.frame, det.bbox))
            frames.append(best.frame)
            if track.kind == SightingKind.VEHICLE:
                views = [crop(c.frame, c.detection.bbox) for c in track.best(plate_views)]
                readings = [r for found in self.plate_reader.read_frames(views) for r in found]
                self._assign_plate(ob, vote_plate(readings))
            observations.append(ob)
        vehicles = [o for o in observations if o.kind == SightingKind.VEHICLE]
        people = [o for o in observations if o.kind == SightingKind.PERSON]
        self._embed(vehicles, self.vehicle_embedder)
        self._embed(people, self.person_embedder)
        # Each track's observation is classified against its own best frame (its boxes are of that frame alone).
        self._classify(frames, [[o] for o in observations if o.kind != SightingKind.FACE])
        return observations

    @staticmethod
    def _assign_plate(owner: Observation, plate: PlateReading | None) -> None:
        attrs = owner.attributes
        assert isinstance(attrs, VehicleAttributes)
        if plate is None or not plate.text:
            return
        if not is_valid_plate(plate.text):  # a partial or foreign read: kept for the record, never as the plate
            attrs.plate_raw = attrs.plate_raw or plate.text
            return
        if attrs.plate is None or (plate.score or 0) > (attrs.plate_score or 0):
            attrs.plate, attrs.plate_score = plate.text, round(float(plate.score), 3)
            attrs.plate_color, attrs.plate_layers = plate.color, plate.layers

    def _objects(self, frame: np.ndarray, dets: list[Detection], plates: list[PlateReading]) -> list[Observation]:
        obs = [Observation(SightingKind(d.kind), d.bbox, d.score,
                           VehicleAttributes(coco_class=d.label) if d.kind == SightingKind.VEHICLE
                           else PersonAttributes(), crop(frame, d.bbox)) for d in dets]
        for plate in plates:
            owner = _owner_of(plate.bbox, [o for o in obs if o.kind == SightingKind.VEHICLE])
            if owner is None:
                # A checkpoint photo often shows only the front of the car: the plate is the evidence.
                box = _vehicle_box_around_plate(plate.bbox, frame.shape)
                owner = Observation(SightingKind.VEHICLE, box, plate.det_score, VehicleAttributes(coco_class=None),
                                    crop(frame, box))
                obs.append(owner)
            self._assign_plate(owner, plate)
        return obs

    def _classify(self, frames: list[np.ndarray], per_frame: list[list[Observation]],
                  plates: list[list[PlateReading]] | None = None) -> None:
        """Attributes of every vehicle and person, each model once for the whole batch.

        A vehicle's type hears its detector class, the attribute model, the other boxes of its frame
        (a rider, a YOLOX two-wheeler box) and its plate's width; colours are judged against the
        lightness of the scene around.
        """
        vehicles: list[tuple[Observation, float, str | None, float | None]] = []
        people: list[tuple[Observation, float]] = []
        casts: dict[int, np.ndarray] = {}  # id(observation) → its scene's colour cast, for the learned heads
        for i, (frame, obs) in enumerate(zip(frames, per_frame, strict=True)):
            scene = scene_lab(frame)
            for o in obs:
                light = scene_lightness(scene, frame.shape, o.bbox)
                if self.heads.get(o.kind) is not None:
                    casts[id(o)] = scene_cast(scene, frame.shape, o.bbox)
                if o.kind == SightingKind.VEHICLE:
                    widths = _width_in_plates(o, plates[i]) if plates is not None else None
                    vehicles.append((o, light, two_wheeler_in_frame(o, obs), widths))
                elif o.kind == SightingKind.PERSON:
                    people.append((o, light))
        votes = self.vehicle_attributes.votes([v[0].crop for v in vehicles])
        for (o, light, two_wheeler, widths), vote in zip(vehicles, votes, strict=True):
            assert isinstance(o.attributes, VehicleAttributes)
            describe_vehicle(o.attributes, vote, o.crop, light, two_wheeler, widths,
                             colors=not self._heads_cover(SightingKind.VEHICLE, "color"))
        person_crops = [o.crop for o, _ in people]
        outputs = self.person_attributes.outputs(person_crops) if people else None
        answers = self.person_attributes.answers(person_crops, outputs) if outputs is not None else []
        rule_colors = not self._heads_cover(SightingKind.PERSON, "upper_color", "lower_color")
        for (o, light), p in zip(people, answers, strict=True):
            describe_person(p, o.crop, light, colors=rule_colors)
            o.attributes = p
        if self.heads[SightingKind.VEHICLE] is not None:
            self._apply_heads(SightingKind.VEHICLE, [o for o, _, _, _ in vehicles], [
                ObjectFeatures(color_features(o.crop, SightingKind.VEHICLE, light, casts[id(o)]), vote.vector(),
                               vote.inner, np.asarray(o.vector, np.float32))
                for (o, light, _, _), vote in zip(vehicles, votes, strict=True)])
        if self.heads[SightingKind.PERSON] is not None and outputs is not None:
            self._apply_heads(SightingKind.PERSON, [o for o, _ in people], [
                ObjectFeatures(color_features(o.crop, SightingKind.PERSON, light, casts[id(o)]), f, inner,
                               np.asarray(o.vector, np.float32))
                for (o, light), f, inner in zip(people, outputs.flags, outputs.inner, strict=True)])

    def _heads_cover(self, kind: SightingKind, *fields: str) -> bool:
        """Whether active heads answer all these fields (then the rules need not compute them)."""
        heads = self.heads[kind]
        return heads is not None and all(f in heads.fields for f in fields)

    def _apply_heads(self, kind: SightingKind, objects: list[Observation], features: list[ObjectFeatures]) -> None:
        """The learned heads' answers replace the rules' for every field they cover; the head version is recorded."""
        heads = self.heads[kind]
        if heads is None or not objects:
            return
        for name, answers in heads.predict(features).items():
            for o, answer in zip(objects, answers, strict=True):
                apply_head_answer(o.attributes, name, answer)
        for o in objects:
            o.model_versions["attributes"] = heads.version

    def attributes_version(self, kind: str) -> str | None:
        heads = self.heads.get(kind)
        return heads.version if heads is not None else None

    def redescribe(self, crops: list[np.ndarray], attributes: list[Attributes], kind: str,
                   votes: list[VehicleVote] | None = None) -> None:
        """The frame is not kept, only the crop: its own edges stand for the scene around it. `votes`: the vehicle
        attribute model's, when the caller has them already."""
        heads = self.heads.get(kind)
        if heads is None or not crops:
            return
        for name, answers in heads.predict(self.crop_features(crops, kind, votes)).items():
            for attrs, answer in zip(attributes, answers, strict=True):
                apply_head_answer(attrs, name, answer)

    def checked_heads(self, heads: HeadSet, kind: str) -> HeadSet:
        """`heads` if this pipeline can feed them (their kind and embedding), else a HeadError naming why."""
        return check(heads, kind, self._embedder(kind).version)

    def crop_features(self, crops: list[np.ndarray], kind: str, votes: list[VehicleVote] | None = None
                      ) -> list[ObjectFeatures]:
        """What the heads read of tight crops (labelled crops, a photo): the crop's own edges are its scene."""
        if not crops:
            return []
        scenes = [(scene_lab(c), c.shape, BBox(0, 0, c.shape[1], c.shape[0])) for c in crops]
        if kind == SightingKind.VEHICLE:
            votes = votes if votes is not None else self.vehicle_attributes.votes(crops)
            model_out, inner = [v.vector() for v in votes], [v.inner for v in votes]
        else:
            outputs = self.person_attributes.outputs(crops)
            model_out, inner = list(outputs.flags), list(outputs.inner)
        vectors = self._embedder(kind).embed(crops)
        return [ObjectFeatures(color_features(c, kind, scene_lightness(*around), scene_cast(*around)),
                               np.asarray(m, np.float32), i, np.asarray(v, np.float32))
                for c, around, m, i, v in zip(crops, scenes, model_out, inner, vectors, strict=True)]

    @staticmethod
    def _embed(observations: list[Observation], embedder: CropEmbedder | ConcatEmbedder) -> None:
        vectors = embedder.embed([o.crop for o in observations])
        for o, v in zip(observations, vectors, strict=True):
            o.vector, o.space = v, embedder.space
            o.model_versions["embedding"] = embedder.version

    def _faces(self, frame: np.ndarray, obs: list[Observation]) -> list[Observation]:
        assert self.face_embedder is not None
        faces = self.detect_faces(frame, obs)
        if not faces:
            return []
        vectors = self.face_embedder.embed_faces(frame, [f.bbox for f in faces])
        people = [i for i, o in enumerate(obs) if o.kind == SightingKind.PERSON]
        out = []
        for det, vec in zip(faces, vectors, strict=True):
            face_crop = crop(frame, det.bbox, margin=0.15)
            parent = _owner_index(det.bbox, obs, people)
            attrs = FaceAttributes(quality=face_quality(crop(frame, det.bbox), det),
                                   landmarks=[[round(x, 1), round(y, 1)] for x, y in det.landmarks])
            out.append(Observation(SightingKind.FACE, det.bbox, det.score, attrs, face_crop, vec,
                                   self.face_embedder.space, parent, {"embedding": self.face_embedder.version}))
        return out


# A head's field → the attribute it writes (its score goes to `<attribute>_score`).
HEAD_FIELDS = {SightingKind.VEHICLE: {"color": "vehicle_color", "type": "vehicle_type"},
               SightingKind.PERSON: {name: name for name in ("gender", "upper_color", "lower_color", "bag", "backpack",
                                                             "hat", "long_sleeves", "long_pants")}}


def apply_head_answer(attrs: Attributes, name: str,
                      answer: tuple[str, float]) -> None:
    """Write one head's answer onto a record: yes/no fields as booleans (None when unsure), the rest as labels."""
    kind = SightingKind.VEHICLE if isinstance(attrs, VehicleAttributes) else SightingKind.PERSON
    attribute = HEAD_FIELDS[kind].get(name)
    if attribute is None:
        return
    label, score = answer
    current = getattr(attrs, attribute, None)
    if isinstance(current, bool) or (current is None and label in ("yes", "no")):
        setattr(attrs, attribute, None if label == UNKNOWN else label == "yes")
    else:
        setattr(attrs, attribute, label)
    setattr(attrs, f"{attribute}_score", score)


def vote_plate(readings: list[PlateReading]) -> PlateReading | None:
    """The format-valid plate text with the highest summed score over a track's readings."""
    valid = [r for r in readings if r.text and is_valid_plate(r.text)]
    if not valid:
        return None
    totals: dict[str, float] = {}
    for r in valid:
        totals[r.text or ""] = totals.get(r.text or "", 0.0) + float(r.score)
    winner = max(totals, key=totals.__getitem__)
    best = max((r for r in valid if r.text == winner), key=lambda r: r.score)
    best.score = min(1.0, totals[winner] / len(valid))  # agreement across views is the confidence
    return best


def _width_in_plates(vehicle: Observation, plates: list[PlateReading]) -> float | None:
    """The vehicle box's width in widths of the plate it owns (the one its plate text came from)."""
    attrs = vehicle.attributes
    text = getattr(attrs, "plate", None)
    if not text or getattr(attrs, "coco_class", None) is None:  # a box drawn around a plate says nothing of size
        return None
    own = [p for p in plates if p.text == text and p.layers == 1 and _centre_inside(p.bbox, vehicle.bbox)]
    return vehicle.bbox.width / own[0].bbox.width if own and own[0].bbox.width > 0 else None


def _centre_inside(inner: BBox, outer: BBox) -> bool:
    cx, cy = (inner.x1 + inner.x2) / 2, (inner.y1 + inner.y2) / 2
    return outer.x1 <= cx <= outer.x2 and outer.y1 <= cy <= outer.y2


def _owner_of(box: BBox, candidates: list[Observation]) -> Observation | None:
    """The smallest candidate whose box holds the centre of `box` (the nearest enclosing object)."""
    inside = [c for c in candidates if _centre_inside(box, c.bbox)]
    return min(inside, key=lambda c: c.bbox.area) if inside else None


def _owner_index(box: BBox, obs: list[Observation], indices: list[int]) -> int | None:
    owner = _owner_of(box, [obs[i] for i in indices])
    return next(i for i in indices if obs[i] is owner) if owner is not None else None


def _vehicle_box_around_plate(plate: BBox, shape: tuple[int, ...]) -> BBox:
    """A plausible vehicle front around a plate: about 4 plate-widths wide and 6 plate-heights tall."""
    h, w = shape[:2]
    cx, pw, ph = (plate.x1 + plate.x2) / 2, plate.width, plate.height
    return BBox(max(0.0, cx - 2 * pw), max(0.0, plate.y1 - 5 * ph),
                min(float(w), cx + 2 * pw), min(float(h), plate.y2 + 1.5 * ph))
