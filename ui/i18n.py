"""Every string the kiosk shows, in one catalog: Chinese (the default) and English.

Reason texts come from the center's catalog (`Reason.zh` / `Reason.en`); everything else is here.
A test checks that both languages have every key with the same `{placeholders}`, and that each
character has a glyph in the shipped font.
"""
from __future__ import annotations

from string import Formatter

from device.model import Reason
from protocol.values import Level

LANGUAGES = ("zh", "en")
# Symbols drawn as text by the widgets (stars on level buttons, the chosen-reason tick, PIN dots,
# the status separator): part of the glyph check too.
STAR, NO_STAR, TICK, DOT, SEP, DASH = "★", "☆", "✔", "●", " · ", " — "

STRINGS: dict[str, dict[str, str]] = {
    "app.title": {"zh": "政务服务好差评", "en": "Government service rating"},
    # top bar and status
    "window.default": {"zh": "{window} 号窗口", "en": "Window {window}"},
    "status.online": {"zh": "在线", "en": "Online"},
    "status.offline": {"zh": "离线", "en": "Offline"},
    "status.pending": {"zh": "待送 {n}", "en": "{n} queued"},
    "status.quarantined": {"zh": "隔离 {n}", "en": "{n} held"},
    # unpaired
    "unpaired.title": {"zh": "本终端尚未配对", "en": "This terminal is not paired yet"},
    "unpaired.ask": {"zh": "请联系工作人员配对", "en": "Please ask the staff to pair it"},
    "unpaired.code": {"zh": "配对码", "en": "Pairing code"},
    "unpaired.device": {"zh": "设备编号：{id}", "en": "Device ID: {id}"},
    "unpaired.scan": {"zh": "工作人员扫码配对", "en": "Staff: scan to pair"},
    "unpaired.connecting": {"zh": "正在连接服务器，请稍候", "en": "Connecting to the center, please wait"},
    "unpaired.stopped": {"zh": "本终端已停用，请联系工作人员", "en": "This terminal is disabled: please ask the staff"},
    "unpaired.retired": {"zh": "本终端已被替换，请联系工作人员", "en": "This terminal was replaced: please ask the staff"},
    # idle
    "idle.welcome": {"zh": "欢迎您！办理完成后请评价", "en": "Welcome! Please rate us when you are done"},
    "idle.staff": {"zh": "当班工作人员", "en": "Staff on duty"},
    "idle.no_staff": {"zh": "暂无工作人员当班", "en": "No staff on duty"},
    "idle.number": {"zh": "工号 {number}", "en": "Staff No. {number}"},
    "idle.staff_qr": {"zh": "人员评价", "en": "Rate the staff"},
    "idle.hall_qr": {"zh": "大厅评价", "en": "Rate the hall"},
    "idle.rate_staff": {"zh": "请为工作人员评价", "en": "Rate the staff member"},
    # case
    "case.item": {"zh": "办理事项", "en": "Service"},
    "case.staff": {"zh": "工作人员：{name}（工号 {number}）", "en": "Staff: {name} (No. {number})"},
    "case.staff_plain": {"zh": "工作人员：{name}", "en": "Staff: {name}"},
    "case.applicant": {"zh": "申请人：{name}", "en": "Applicant: {name}"},
    "case.prompt": {"zh": "请您对本次服务进行评价", "en": "Please rate this service"},
    "case.scan": {"zh": "扫码评价，可留言、上传图片", "en": "Scan to rate: add comments and photos"},
    "case.no_qr": {"zh": "请在屏幕上评价", "en": "Please rate on the screen"},
    # levels (the Chinese names are the platform's: protocol.values.Level.zh)
    "level.very_satisfied": {"zh": "非常满意", "en": "Very satisfied"},
    "level.satisfied": {"zh": "满意", "en": "Satisfied"},
    "level.basically_satisfied": {"zh": "基本满意", "en": "Fairly satisfied"},
    "level.dissatisfied": {"zh": "不满意", "en": "Dissatisfied"},
    "level.very_dissatisfied": {"zh": "非常不满意", "en": "Very dissatisfied"},
    # reasons
    "reasons.title": {"zh": "请选择不满意的原因（可多选）", "en": "What went wrong? Choose one or more"},
    "reasons.none": {"zh": "原因列表尚未下发，请扫码评价", "en": "No list of reasons yet: please scan the QR code"},
    "reasons.need_one": {"zh": "请至少选择一项原因", "en": "Choose at least one reason"},
    "reasons.back": {"zh": "返回", "en": "Back"},
    "reasons.confirm": {"zh": "确认提交", "en": "Submit"},
    "reasons.prev": {"zh": "上一页", "en": "Previous"},
    "reasons.next": {"zh": "下一页", "en": "Next"},
    "reasons.page": {"zh": "第 {page}/{pages} 页", "en": "Page {page} of {pages}"},
    # endings
    "thanks.title": {"zh": "谢谢您的评价！", "en": "Thank you for your rating!"},
    "thanks.sub": {"zh": "您的评价已记录，我们将持续改进服务", "en": "It has been recorded. We keep improving our service."},
    "elsewhere.title": {"zh": "您已通过手机完成评价", "en": "You have rated on your phone"},
    "elsewhere.sub": {"zh": "谢谢您的评价！", "en": "Thank you!"},
    "unavailable.title": {"zh": "暂时无法记录评价", "en": "Your rating cannot be recorded right now"},
    "unavailable.sub": {"zh": "请扫描二维码评价", "en": "Please scan the QR code to rate"},
    "unavailable.no_qr": {"zh": "请稍后再试或联系工作人员", "en": "Please try again later or ask the staff"},
    "fallback.wait": {"zh": "请稍候", "en": "Please wait"},
    # maintenance (technicians)
    "maint.pin_title": {"zh": "请输入维护密码", "en": "Enter the maintenance PIN"},
    "maint.pin_wrong": {"zh": "密码错误", "en": "Wrong PIN"},
    "maint.locked": {"zh": "错误次数过多，请稍后再试", "en": "Too many attempts: try again later"},
    "maint.ok": {"zh": "确定", "en": "OK"},
    "maint.delete": {"zh": "删除", "en": "Delete"},
    "maint.cancel": {"zh": "取消", "en": "Cancel"},
    "maint.title": {"zh": "终端维护", "en": "Terminal maintenance"},
    "maint.device": {"zh": "设备编号", "en": "Device ID"},
    "maint.firmware": {"zh": "固件版本", "en": "Firmware"},
    "maint.window": {"zh": "所属窗口", "en": "Window"},
    "maint.broker": {"zh": "服务器", "en": "Broker"},
    "maint.connected": {"zh": "已连接 {host}:{port}", "en": "Connected to {host}:{port}"},
    "maint.disconnected": {"zh": "未连接 {host}:{port}", "en": "Not connected to {host}:{port}"},
    "maint.outbox": {"zh": "待送记录", "en": "Outbox"},
    "maint.outbox_value": {"zh": "{pending} 条（容量 {capacity}）", "en": "{pending} (capacity {capacity})"},
    "maint.quarantine": {"zh": "隔离记录", "en": "Quarantined"},
    "maint.alarms": {"zh": "告警", "en": "Alarms"},
    "maint.last_error": {"zh": "最近错误", "en": "Last error"},
    "maint.network": {"zh": "网络", "en": "Network"},
    "maint.ui_errors": {"zh": "界面异常", "en": "UI errors"},
    "maint.connection": {"zh": "连接问题", "en": "Connection"},
    "maint.none": {"zh": "无", "en": "none"},
    "maint.test_keys": {"zh": "按键测试", "en": "Test keys"},
    "maint.print_test": {"zh": "打印测试页", "en": "Print test page"},
    "maint.re_enrol": {"zh": "重新注册", "en": "Re-enrol"},
    "maint.requeue": {"zh": "重发隔离", "en": "Re-send held"},
    "maint.requeued": {"zh": "{n} 条隔离记录已重新发送", "en": "{n} held records offered again"},
    "maint.confirm": {"zh": "确认{name}？", "en": "{name}: sure?"},
    "maint.confirm_re_enrol": {"zh": "再按一次确认：删除配对和账号，重新申请配对码",
                               "en": "Press again to confirm: forget the pairing and account, ask for a new code"},
    "maint.re_enrolling": {"zh": "配对已删除，正在重新申请配对码", "en": "Pairing forgotten: asking for a new code"},
    "maint.manual": {"zh": "手工配置", "en": "set by hand"},
    "maint.exit": {"zh": "退出维护", "en": "Exit"},
    "maint.language": {"zh": "English", "en": "中文"},
    "maint.hook_done": {"zh": "已执行：{name}", "en": "Done: {name}"},
    "maint.hook_failed": {"zh": "执行失败：{name}", "en": "Failed: {name}"},
}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


class Translator:
    """`t("case.prompt")`, `t("status.pending", n=3)`; English falls back to Chinese, never to a key."""

    def __init__(self, language: str = "zh"):
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}")
        self.language = language

    def __call__(self, key: str, **values: object) -> str:
        entry = STRINGS[key]
        text = entry.get(self.language) or entry["zh"]
        return text.format(**values) if values else text

    def level(self, level: Level) -> str:
        return self(f"level.{level.value}")

    def reason(self, reason: Reason) -> str:
        return reason.en if self.language == "en" and reason.en else reason.zh


def all_strings() -> list[str]:
    """Every catalog text, both languages (for the glyph check)."""
    return [text for entry in STRINGS.values() for text in entry.values()] + [STAR, NO_STAR, TICK, DOT, SEP, DASH]
