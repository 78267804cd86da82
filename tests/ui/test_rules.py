"""The kiosk's rules that need no window: palette contrast, the string catalog and its glyphs in the
shipped font, panel geometry, screen selection, configuration keys."""
from __future__ import annotations

import dataclasses

import pytest
from fontTools.ttLib import TTCollection

from device import config
from device.machine import Phase, Settings, State
from device.model import Case, Catalog, Reason, Staff
from devkit.factories import CATALOG
from protocol.values import LEVELS, Level
from ui import present
from ui.env import FONT
from ui.i18n import STRINGS, Translator, all_strings, placeholders
from ui.present import PairingInfo, Screen
from ui.theme import MIN_CONTRAST, MIN_TARGET_MM, PALETTE, PANELS, Geometry, contrast, hex_rgb


# ---- colours ----------------------------------------------------------------------------------

@pytest.mark.parametrize("what,fg,bg", PALETTE.pairs(), ids=[p[0] for p in PALETTE.pairs()])
def test_every_text_colour_pair_has_at_least_4_5_to_1(what, fg, bg):
    assert contrast(fg, bg) >= MIN_CONTRAST, f"{what}: {fg} on {bg} is {contrast(fg, bg):.2f}:1"


def test_contrast_formula_matches_known_values():
    assert contrast("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast("#FFFFFF", "#FFFFFF") == pytest.approx(1.0)
    assert contrast("#767676", "#FFFFFF") == pytest.approx(4.54, abs=0.01)  # the classic AA grey
    assert contrast(hex_rgb("#0B4A84"), "#FFFFFF") == contrast("#FFFFFF", "#0B4A84")


# ---- strings and glyphs -------------------------------------------------------------------------

def test_every_key_has_both_languages_with_the_same_placeholders():
    for key, entry in STRINGS.items():
        assert set(entry) == {"zh", "en"}, key
        assert entry["zh"].strip() and entry["en"].strip(), key
        assert placeholders(entry["zh"]) == placeholders(entry["en"]), key


def test_level_names_are_the_platform_names():
    t = Translator("zh")
    assert [t.level(lv) for lv in LEVELS] == [lv.zh for lv in LEVELS]
    assert [t.level(lv) for lv in LEVELS] == ["非常满意", "满意", "基本满意", "不满意", "非常不满意"]


def test_translator_formats_and_falls_back():
    assert Translator("zh")("status.pending", n=3) == "待送 3"
    assert Translator("en")("status.pending", n=3) == "3 queued"
    r = Reason("501", "等候时间长", "")
    assert Translator("en").reason(r) == "等候时间长"  # no English from the center: Chinese
    assert Translator("en").reason(dataclasses.replace(r, en="Long wait")) == "Long wait"
    with pytest.raises(ValueError):
        Translator("fr")


def _font_cmap() -> set[int]:
    collection = TTCollection(str(FONT))
    try:
        return set(collection.fonts[0].getBestCmap())  # face 0: the one SDL_ttf (Kivy) opens
    finally:
        collection.close()


def test_every_catalog_string_has_glyphs_in_the_shipped_font():
    cmap = _font_cmap()
    missing = {ch for text in all_strings() for ch in text if ord(ch) not in cmap and not ch.isspace()}
    assert not missing, f"no glyph in {FONT.name} for: {''.join(sorted(missing))}"


def test_the_demo_centers_reasons_have_glyphs_too():
    cmap = _font_cmap()
    texts = [r["zh"] for r in CATALOG["reasons"]] + [r["en"] for r in CATALOG["reasons"]]
    assert all(ord(ch) in cmap for text in texts for ch in text if not ch.isspace())


def test_the_glyph_check_can_fail():
    assert ord("😀") not in _font_cmap()  # an emoji: not in WenQuanYi


def test_the_font_licence_ships_beside_the_font():
    assert (FONT.parent / "LICENSE-wqy-microhei.txt").is_file()


# ---- geometry -----------------------------------------------------------------------------------

def test_reference_panel_density():
    g = Geometry.for_window(800, 480, 0, 7.0)
    assert g.dpi == pytest.approx(133.3, abs=0.1)
    assert g.target == 79  # 15 mm
    assert g.mm(g.target) >= MIN_TARGET_MM


@pytest.mark.parametrize("panel", PANELS)
def test_configured_dpi_wins_over_the_diagonal(panel):
    w, h, diag = PANELS[panel]
    assert Geometry.for_window(w, h, 200.0, diag).dpi == 200.0
    assert Geometry.for_window(w, h, 0, diag).mm(w) == pytest.approx(diag * 25.4 * w / (w * w + h * h) ** 0.5)


# ---- which screen ------------------------------------------------------------------------------------

def _state(**kw) -> State:
    return dataclasses.replace(State(), **kw)


def test_screen_follows_the_phase():
    for phase, screen in [(Phase.IDLE, Screen.IDLE), (Phase.CASE, Screen.CASE), (Phase.REASONS, Screen.REASONS),
                          (Phase.THANKS, Screen.THANKS), (Phase.RATED_ELSEWHERE, Screen.RATED_ELSEWHERE),
                          (Phase.UNAVAILABLE, Screen.UNAVAILABLE)]:
        assert present.screen_for(_state(phase=phase), None) == screen


def test_unpaired_and_maintenance_overlay_the_phase():
    s = _state(phase=Phase.CASE)
    assert present.screen_for(s, PairingInfo("123456")) == Screen.UNPAIRED
    assert present.screen_for(s, PairingInfo("123456"), Screen.PIN) == Screen.PIN
    assert present.screen_for(s, None, Screen.MAINTENANCE) == Screen.MAINTENANCE


def test_committing_keeps_the_screen_the_citizen_pressed_on_with_input_off():
    s = _state(phase=Phase.COMMITTING)
    assert present.screen_for(s, None, previous=Screen.REASONS) == Screen.REASONS
    assert present.screen_for(s, None, previous=Screen.THANKS) == Screen.IDLE
    assert not present.accepts_input(s)


def test_staff_rating_offered_only_when_the_core_would_take_it():
    staff = Staff("S1", "王芳", "0101")
    assert present.staff_rating_offered(_state(staff=staff, settings=Settings(staff_rating_when_idle=True)))
    assert not present.staff_rating_offered(_state())
    assert not present.staff_rating_offered(_state(staff=staff, settings=Settings(staff_rating_when_idle=False)))
    assert not present.staff_rating_offered(_state(staff=staff, phase=Phase.CASE))


def test_idle_levels_rate_the_open_case_before_anything_else():
    staff = Staff("S1", "王芳", "0101")
    case = Case("SH1", "310115-001", "居住证办理", staff, "ap_0123456789abcdef", "张*")
    assert present.idle_levels(_state(case=case)) == "case"  # its screen timed out, still open at the center
    assert present.idle_levels(_state(case=case, staff=staff,
                                      settings=Settings(staff_rating_when_idle=True))) == "case"
    assert present.idle_levels(_state(case=case, case_rated=True)) == ""
    assert present.idle_levels(_state(case=case, case_closed=True)) == ""
    assert present.idle_levels(_state(staff=staff, settings=Settings(staff_rating_when_idle=True))) == "staff"
    assert present.idle_levels(_state(case=case, phase=Phase.CASE)) == ""


def test_reason_pages():
    reasons = [Reason(str(i), f"r{i}") for i in range(7)]
    assert [len(p) for p in present.pages(reasons, 3)] == [3, 3, 1]
    assert present.pages([], 4) == [()]


def test_status_text():
    t = Translator("zh")
    assert present.status_text(t, present.Status(True, 0, 0, 10)) == "在线"
    assert present.status_text(t, present.Status(False, 3, 1, 10)) == "离线 · 待送 3 · 隔离 1"


def test_staff_qr_url_one_person_one_code():
    assert present.staff_qr_url("https://x.gov.cn/s/{staff}", Staff("S0101", "王芳")) == "https://x.gov.cn/s/S0101"
    assert present.staff_qr_url("", Staff("S0101", "王芳")) == ""
    assert present.staff_qr_url("https://x.gov.cn/s/{staff}", None) == ""


# ---- configuration ---------------------------------------------------------------------------------

def test_ui_keys_load_from_the_environment():
    cfg = config.load([], {"HCP_UI_PANEL_DPI": "169.5", "HCP_UI_ROTATION": "180", "HCP_UI_LANGUAGE": "en",
                           "HCP_UI_HALL_QR_URL": "https://hcp.example.gov.cn/hall",
                           "HCP_UI_STAFF_QR_TEMPLATE": "https://hcp.example.gov.cn/s/{staff}",
                           "HCP_UI_IDLE_FPS": "5", "HCP_UI_MAINTENANCE_PIN": "2468"})
    assert (cfg.ui.panel_dpi, cfg.ui.rotation, cfg.ui.language, cfg.ui.idle_fps) == (169.5, 180, "en", 5)


@pytest.mark.parametrize("key,value", [("HCP_UI_HALL_QR_URL", "http://plain.example/hall"),
                                       ("HCP_UI_STAFF_QR_TEMPLATE", "https://x.example/no-placeholder"),
                                       ("HCP_UI_MAINTENANCE_PIN", "12"), ("HCP_UI_FULLSCREEN", "maybe"),
                                       ("HCP_UI_WINDOW_SIZE", "big"), ("HCP_UI_TOUCH_GUARD_MS", "-1")])
def test_bad_ui_values_are_reported_by_name(key, value):
    with pytest.raises(config.ConfigError) as e:
        config.load([], {key: value})
    assert key[4:].lower().replace("_", ".", 1) in str(e.value)


def test_levels_are_five_and_two_are_bad():
    assert [lv.is_bad for lv in LEVELS] == [False, False, False, True, True]
    assert Catalog("v", (Reason("1", "x"),)).codes() == {"1"}
    assert Level.DISSATISFIED.is_bad
