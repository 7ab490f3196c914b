"""Vehicle type and colour, clothing colours: the rules on real eval crops, and the real pipeline end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.attributes import describe_person
from models.colors import UNKNOWN, clothing_colors, scene_lab, scene_lightness, vehicle_color
from models.imageops import crop, decode_image
from models.observations import Observation
from models.records import (
    PERSON_COLORS,
    VEHICLE_COLORS,
    VEHICLE_TYPES,
    BBox,
    PersonAttributes,
    SightingKind,
    VehicleAttributes,
)
from models.vehicle_type import TypeEvidence, two_wheeler_evidence, vehicle_type

REID = Path(__file__).resolve().parents[2] / "shared" / "eval" / "reid"


def image(name: str) -> np.ndarray:
    path = REID / name
    if not path.is_file():
        pytest.skip(f"the shared eval data is not at {REID}")
    return decode_image(path.read_bytes())


def body_color(name: str, box: BBox, two_wheeler: bool = False) -> tuple[str, float]:
    frame = image(name)
    return vehicle_color(crop(frame, box), scene_lightness(scene_lab(frame), frame.shape, box), two_wheeler)


# Boxes are the detectors' boxes on these images (YOLOX or the SSD), so the crops are the ones ingestion colours.
@pytest.mark.parametrize(("name", "box", "two_wheeler", "expected"), [
    ("vehicle/car_0041/cam1_01.jpg", BBox(5, 3, 189, 101), False, "white"),
    ("vehicle/car_0024/cam1_01.jpg", BBox(10, 11, 169, 109), False, "silver"),  # light metallic grey, not white
    ("vehicle/car_0038/cam1_01.jpg", BBox(19, 20, 216, 135), False, "black"),
    ("vehicle/bus_0004/cam2_01.jpg", BBox(24, 5, 487, 476), False, "blue"),  # hued panels win over dark windows
    ("vehicle/motorcycle_0094/cam1_01.jpg", BBox(22, 26, 92, 163), True, "black"),  # below the rider
])
def test_body_colours_of_real_vehicles_are_what_the_labeller_saw(name: str, box: BBox, two_wheeler: bool,
                                                                 expected: str) -> None:
    color, score = body_color(name, box, two_wheeler)
    assert color == expected and 0.3 <= score <= 1.0
    assert color in VEHICLE_COLORS


def test_clothing_colours_come_from_torso_and_legs() -> None:
    frame = image("person/cuhk03_0018/A_01.jpg")  # white shirt, black trousers (high-confidence label)
    box = BBox(9, 5, 48, 125)
    (upper, upper_score), (lower, lower_score) = clothing_colors(
        crop(frame, box), scene_lightness(scene_lab(frame), frame.shape, box))
    assert (upper, lower) == ("white", "black") and min(upper_score, lower_score) >= 0.5
    assert {upper, lower} <= set(PERSON_COLORS)


def test_faded_denim_is_blue_and_a_black_top_stays_black() -> None:
    frame = image("person/cuhk03_0047/A_01.jpg")  # black top, blue jeans (high-confidence label)
    box = BBox(0, 0, 64, 125)
    (upper, _), (lower, lower_score) = clothing_colors(crop(frame, box),
                                                       scene_lightness(scene_lab(frame), frame.shape, box))
    assert (upper, lower) == ("black", "blue") and lower_score >= 0.5


def test_small_people_get_unknown_colours_and_a_backpack_is_a_bag() -> None:
    attrs = PersonAttributes(backpack=True, bag=False)
    describe_person(attrs, image("person/cuhk03_0018/A_01.jpg")[:30, :16], 50.0)
    assert attrs.upper_color == attrs.lower_color == UNKNOWN and attrs.upper_color_score == 0.0
    assert attrs.bag is True


def test_the_type_hears_every_signal() -> None:
    says_truck = {"car": 0.01, "bus": 0.01, "truck": 0.97, "van": 0.01}
    # YOLOX's bus outweighs a half-trusted model that calls every big rear view a truck.
    assert vehicle_type(TypeEvidence("bus", says_truck))[0] == "bus"
    # The class-less SSD box leaves the model to decide: vans exist only in the model's vocabulary.
    van, score = vehicle_type(TypeEvidence("vehicle", {"car": 0.0, "bus": 0.0, "truck": 0.0, "van": 1.0}))
    assert van == "van" and 0.25 < score < 1.0
    assert vehicle_type(TypeEvidence("motorcycle", says_truck))[0] == "motorcycle"
    assert vehicle_type(TypeEvidence("vehicle", says_truck, two_wheeler="motorcycle"))[0] == "motorcycle"
    assert set(VEHICLE_TYPES) >= {"car", "van", "truck", "bus", "motorcycle"}


def test_a_rider_makes_a_two_wheeler_and_a_pedestrian_does_not() -> None:
    # motorcycle_0074/cam1: the SSD's class-less box under a YOLOX person box.
    assert two_wheeler_evidence(BBox(12, 61, 82, 158), [BBox(13, 37, 82, 174)], []) == "motorcycle"
    assert two_wheeler_evidence(BBox(0, 0, 200, 100), [BBox(10, 10, 40, 100)], []) is None  # walking past a car
    # bus_0002/cam2: a far-off scooter at the bus's top edge is not the bus.
    assert two_wheeler_evidence(BBox(20, 10, 396, 485), [], [(BBox(291, 1, 327, 54), "motorcycle")]) is None


def _main(observations: list[Observation], kind: str) -> Observation:
    return max((o for o in observations if o.kind == kind), key=lambda o: o.bbox.area)


@pytest.mark.models
@pytest.mark.parametrize(("name", "vtype", "color"), [
    ("vehicle/car_0041/cam1_01.jpg", "car", "white"),
    ("vehicle/motorcycle_0094/cam1_01.jpg", "motorcycle", "black"),
    ("vehicle/bus_0004/cam2_01.jpg", "bus", "blue"),
    ("vehicle/truck_0009/cam1_01.jpg", "truck", UNKNOWN),  # the box is mostly tanker: the cab's colour is not said
])
def test_the_pipeline_types_and_colours_real_vehicles(pipeline, name: str, vtype: str, color: str) -> None:  # noqa: ANN001
    found = _main(pipeline.process([image(name)])[0], SightingKind.VEHICLE)
    attrs = found.attributes
    assert isinstance(attrs, VehicleAttributes)
    assert (attrs.vehicle_type, attrs.vehicle_color) == (vtype, color)
    assert attrs.vehicle_type_score is not None and 0.25 < attrs.vehicle_type_score <= 1.0
    assert attrs.vehicle_color_score is not None and (color == UNKNOWN or attrs.vehicle_color_score >= 0.3)


@pytest.mark.models
def test_the_pipeline_fills_clothing_colours_with_confidences(pipeline) -> None:  # noqa: ANN001
    attrs = _main(pipeline.process([image("person/cuhk03_0018/A_01.jpg")])[0], SightingKind.PERSON).attributes
    assert isinstance(attrs, PersonAttributes)
    assert (attrs.upper_color, attrs.lower_color) == ("white", "black")
    assert attrs.upper_color_score is not None and attrs.lower_color_score is not None
    assert min(attrs.upper_color_score, attrs.lower_color_score) >= 0.5


@pytest.mark.models
def test_a_vehicle_photo_is_described_with_the_same_rules(pipeline) -> None:  # noqa: ANN001
    described = pipeline.describe_object(image("vehicle/car_0041/cam1_01.jpg"), SightingKind.VEHICLE)
    assert (described.vehicle_type, described.vehicle_color) == ("car", "white")
