import pytest
import torch

from mmgraph.errors import InputError
from mmgraph.graph.segments import find_segments, match_segments, regions_from_segments, segment_feature_dim

WHITE = (255, 255, 255)


def _image(size=20, background=WHITE):
    return torch.tensor(background, dtype=torch.uint8).view(3, 1, 1).repeat(1, size, size)


def _paint(image, colour, y0, y1, x0, x1):
    image[:, y0:y1, x0:x1] = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1)


def test_finds_each_flat_coloured_object_with_its_pixel_box():
    image = _image()
    _paint(image, (255, 0, 0), 2, 6, 10, 15)  # red square, top right
    _paint(image, (0, 0, 255), 12, 18, 1, 4)  # blue bar, bottom left
    _paint(image, (0, 255, 0), 12, 15, 12, 16)  # green, bottom right
    boxes, labels = find_segments(image)
    # Reading order of the top-left corners: top to bottom, then left to right.
    assert boxes.tolist() == [[10, 2, 15, 6], [1, 12, 4, 18], [12, 12, 16, 15]]
    assert labels.shape == (20, 20) and int(labels.max()) == 3
    assert int((labels == 1).sum()) == 4 * 5 and int((labels == 2).sum()) == 6 * 3
    assert int((labels == 0).sum()) == 400 - 20 - 18 - 12


def test_touching_objects_of_two_colours_stay_apart_and_one_colour_in_two_places_is_two():
    image = _image()
    _paint(image, (255, 0, 0), 5, 10, 2, 7)
    _paint(image, (0, 0, 255), 5, 10, 7, 12)  # shares an edge with the red one
    _paint(image, (255, 0, 0), 14, 18, 14, 18)  # red again, elsewhere
    boxes, _ = find_segments(image)
    assert boxes.tolist() == [[2, 5, 7, 10], [7, 5, 12, 10], [14, 14, 18, 18]]


def test_connectivity_min_pixels_and_background():
    image = _image(background=(10, 20, 30))
    _paint(image, (200, 0, 0), 2, 4, 2, 4)
    _paint(image, (200, 0, 0), 4, 6, 4, 6)  # touches the first at a corner only
    _paint(image, (0, 200, 0), 15, 16, 15, 17)  # two pixels
    assert find_segments(image)[0].size(0) == 1  # the corner joins (8-connectivity); the sliver is dropped
    assert find_segments(image, connectivity=4)[0].size(0) == 2  # two red squares; still no sliver
    assert find_segments(image, connectivity=4, min_pixels=2)[0].size(0) == 3
    # Naming the red as the background makes the rest of the image a segment, beside the sliver.
    boxes, _ = find_segments(image, background=(200, 0, 0), min_pixels=1)
    assert boxes.size(0) == 2


def test_float_images_read_as_uint8():
    image = _image()
    _paint(image, (255, 128, 0), 3, 9, 3, 9)
    boxes_u8, labels_u8 = find_segments(image)
    boxes_f, labels_f = find_segments(image.float() / 255)
    assert torch.equal(boxes_u8, boxes_f) and torch.equal(labels_u8, labels_f)


def test_region_features_are_the_masked_pixels_and_mask():
    image = _image(size=24)
    _paint(image, (255, 0, 0), 4, 12, 4, 12)  # an 8 x 8 red square
    _paint(image, (0, 0, 255), 16, 20, 16, 20)
    _paint(image, (255, 255, 255), 16, 18, 16, 18)  # a white (background) notch in the blue one
    regions = regions_from_segments(image, crop=4, sample_id="img-1")
    assert regions.num_regions == 2 and regions.image_size == (24.0, 24.0)
    assert regions.features.shape == (2, segment_feature_dim(4)) == (2, 64)
    red = regions.features[0].view(4, 4, 4)
    assert torch.allclose(red[0], torch.ones(4, 4)) and torch.allclose(red[1:3], torch.zeros(2, 4, 4))
    assert torch.allclose(red[3], torch.ones(4, 4))  # the mask fills the box
    blue = regions.features[1].view(4, 4, 4)
    # The notch is outside the segment: its pixels count as 0 in RGB and mask, not as white.
    assert float(blue[3].mean()) == pytest.approx(12 / 16)
    assert float(blue[0].max()) == 0.0 and float(blue[2].mean()) == pytest.approx(12 / 16)


def test_clear_errors():
    with pytest.raises(InputError, match="sample 'x'.*no object found"):
        regions_from_segments(_image(), sample_id="x")
    with pytest.raises(InputError, match=r"\[3, H, W\]"):
        find_segments(torch.zeros(20, 20, 3, dtype=torch.uint8))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        find_segments(torch.full((3, 5, 5), 2.0))
    with pytest.raises(InputError, match="uint8 or float"):
        find_segments(torch.zeros(3, 5, 5, dtype=torch.long))
    with pytest.raises(InputError, match="connectivity"):
        find_segments(_image(), connectivity=6)
    with pytest.raises(InputError, match="background"):
        find_segments(_image(), background=(1, 2))


def test_match_segments_pairs_objects_with_found_boxes():
    found = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    objects = torch.tensor([[21.0, 20, 30, 30], [0, 0, 10, 9], [40, 40, 50, 50], [0, 0, 3, 3]])
    assert match_segments(found, objects) == [1, 0, None, None]
    assert match_segments(found[:0], objects) == [None] * 4
