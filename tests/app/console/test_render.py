"""Pure renderers behind the panels: camera half-blocks, joint bars, sparklines."""

from __future__ import annotations

import numpy as np

from app.console.widgets.camera import RAMP, fit, render_halfblock
from app.console.widgets.curves import BLOCKS, sparkline, success_rate
from app.console.widgets.joints import joint_bar, limit_flag
from app.control.protocol import EpisodeRecord, JointStatus


def test_halfblock_puts_upper_pixel_in_foreground_and_lower_in_background():
    img = np.zeros((4, 2, 3), np.uint8)
    img[0] = (255, 0, 0)  # row 0 red
    img[1] = (0, 0, 255)  # row 1 blue
    img[2] = (0, 255, 0)
    img[3] = (255, 255, 255)
    text = render_halfblock(img, cols=2, rows=2)
    assert text.plain == "▀▀\n▀▀"
    styles = [span.style for span in text.spans]
    first, third = styles[0], styles[2]
    assert first.color.triplet == (255, 0, 0) and first.bgcolor.triplet == (0, 0, 255)
    assert third.color.triplet == (0, 255, 0) and third.bgcolor.triplet == (255, 255, 255)


def test_no_colour_fallback_is_a_brightness_ramp():
    img = np.zeros((2, 4, 3), np.uint8)
    img[:, 2:] = 255
    text = render_halfblock(img, cols=4, rows=2, color=False)
    assert text.plain == f"{RAMP[0] * 2}{RAMP[-1] * 2}\n{RAMP[0] * 2}{RAMP[-1] * 2}"
    assert not text.spans


def test_no_colour_ramp_stretches_a_dim_frame_but_not_a_flat_one():
    dim = np.full((2, 3, 3), 40, np.uint8)
    dim[:, 1] = 70
    dim[:, 2] = 100  # three dim levels: absolute brightness would draw them all with the first glyphs
    assert (
        render_halfblock(dim, cols=3, rows=2, color=False).plain.split("\n")[0]
        == RAMP[0] + RAMP[4] + RAMP[-1]
    )
    flat = np.full((2, 3, 3), 40, np.uint8)
    flat[:, 2] = 50  # within sensor noise: not blown up into black and white
    row = render_halfblock(flat, cols=3, rows=2, color=False).plain.split("\n")[0]
    assert row == RAMP[1] * 3


def test_fit_keeps_aspect_ratio_in_cells():
    assert fit(48, 64, cols=26, rows=6) == (16, 6)  # 12 pixel rows -> 16 columns for 4:3
    assert fit(48, 64, cols=10, rows=20) == (10, 4)
    assert fit(0, 64, 10, 10) == (0, 0)


def test_joint_bar_marks_present_and_command_inside_limits():
    j = JointStatus("elbow_flex", present=0.0, commanded=90.0, lower=-90.0, upper=90.0)
    assert joint_bar(j, 11) == "[────●───○]"
    j.commanded = 0.0
    assert joint_bar(j, 11) == "[────◉────]"
    j.present, j.commanded = 500.0, None  # outside the limits: pinned to the bracket, still visible
    assert joint_bar(j, 11) == "[────────●]"
    assert limit_flag(j) == ">"


def test_sparkline_scales_to_the_given_range_and_keeps_the_newest():
    assert sparkline([0.0, 0.5, 1.0], 10, 0.0, 1.0) == BLOCKS[0] + BLOCKS[4] + BLOCKS[-1]
    assert sparkline(list(range(100)), 5) == sparkline(list(range(95, 100)), 5)
    assert sparkline([], 5) == ""


def test_success_rate_is_a_moving_average():
    hist = [EpisodeRecord(i, s, 0.0) for i, s in enumerate([True, False, None, True])]
    assert success_rate(hist, window=2) == [1.0, 0.5, 0.0, 0.5]
