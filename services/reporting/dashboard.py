"""The dashboard page: completion against target per township, payer split, premium and claims by
month, and the loss ratio with its numerator and denominator. Server-rendered HTML with inline SVG
charts, so it needs nothing from the internet and reads the same in any browser."""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import quote

from services.reporting.report import LEVEL_ZH, LOSS_RATIO_RULE_ZH, Report, percent
from shared.domain.areas import LEVELS, level_rank
from shared.domain.calendar import CST
from shared.domain.money import yuan_grouped

BAR = "#2f6fb0"
GOV = "#2f6fb0"
SELF = "#e0892b"
CLAIMS = "#c0392b"


def _completion_chart(report: Report) -> str:
    rows = report.rows
    width, row_h, label_w = 640, 26, 90
    height = row_h * len(rows) + 30
    scale = (width - label_w - 70) / 1.2  # up to 120% of target fits
    parts = [f'<svg class="chart" id="chart-completion" role="img" aria-label="各乡镇完成率" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">']
    for share in (0, 50, 100):  # the x axis: 100% (the target) dashed
        x = label_w + scale * share / 100
        dash = ' stroke-dasharray="4"' if share == 100 else ""
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 20}" stroke="#999"{dash}/>'
                     f'<text class="axis-value" x="{x:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">{share}%</text>')
    for i, row in enumerate(rows):
        value = row.derived()["completion_rate"]
        w = float(min(value or 0, 1.2)) * scale
        y = i * row_h + 4
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" font-size="13" text-anchor="end">{escape(row.township_name)}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h - 8}" fill="{BAR}">'
                     f'<title>{escape(row.township_name)} {percent(value)}</title></rect>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" font-size="12">{percent(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _payer_chart(report: Report) -> str:
    rows = report.rows
    width, row_h, label_w = 640, 26, 90
    height = row_h * len(rows) + 10
    biggest = max((r.figures.policies for r in rows), default=0) or 1
    scale = (width - label_w - 90) / biggest
    parts = [f'<svg class="chart" id="chart-payer" role="img" aria-label="投保方式" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">']
    for i, row in enumerate(rows):
        gov, own = row.policies_government_all, row.figures.policies_self
        y = i * row_h + 4
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" font-size="13" text-anchor="end">{escape(row.township_name)}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y}" width="{gov * scale:.1f}" height="{row_h - 8}" fill="{GOV}">'
                     f'<title>政府投保 {gov}</title></rect>'
                     f'<rect class="bar" x="{label_w + gov * scale:.1f}" y="{y}" width="{own * scale:.1f}" height="{row_h - 8}" '
                     f'fill="{SELF}"><title>自主投保 {own}</title></rect>'
                     f'<text x="{label_w + (gov + own) * scale + 4:.1f}" y="{y + 15}" font-size="12">{gov} / {own}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _axis_step(biggest: int) -> int:
    """A round step in fen (1, 2 or 5 times a power of ten yuan) giving at most five gridlines."""
    step = 100
    while biggest / step > 5:
        for factor in (2, 5 / 2, 2):  # 1 -> 2 -> 5 -> 10
            step = int(step * factor)
            if biggest / step <= 5:
                break
    return step


def _short_yuan(fen: int) -> str:
    """A bar label short enough to sit above a bar: 12.3万 or 850."""
    yuan_whole = fen // 100
    return f"{yuan_whole / 10000:.1f}万" if yuan_whole >= 10000 else f"{yuan_whole}"


def _monthly_chart(report: Report) -> str:
    """Premium and claims paid per month: a y axis in yuan with gridlines, and each bar's value
    written above it, so the chart reads without tooltips."""
    months = report.monthly
    width, height, bottom, left = 640, 240, 30, 64
    biggest = max((max(m["premium_fen"], m["claims_paid_fen"]) for m in months), default=0) or 100
    step = _axis_step(biggest)
    ceiling = -(-biggest // step) * step
    slot = (width - left) / max(len(months), 1)
    bar_w = max(min(slot / 2 - 4, 30), 2)
    upright = bar_w < 26  # too narrow for "10.2万" side by side: the labels stand on end, with room above
    top = 44 if upright else 22
    plot = height - bottom - top
    parts = [f'<svg class="chart" id="chart-monthly" role="img" aria-label="按月保费与赔付" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">']
    for tick in range(0, ceiling + 1, step):
        y = height - bottom - plot * tick / ceiling
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text class="axis-value" x="{left - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{yuan_grouped(tick).removesuffix(".00")}</text>')
    for i, m in enumerate(months):
        x = left + 4 + i * slot
        for j, (key, colour, label) in enumerate((("premium_fen", BAR, "保费"), ("claims_paid_fen", CLAIMS, "赔付"))):
            h = plot * m[key] / ceiling
            bx = x + j * (bar_w + 2)
            parts.append(f'<rect class="bar" x="{bx:.1f}" y="{height - bottom - h:.1f}" width="{bar_w:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{m["month"]}月 {label} {yuan_grouped(m[key])} 元</title></rect>')
            if m[key]:
                cx, cy = bx + bar_w / 2, height - bottom - h - 3
                turn = f' transform="rotate(-90 {cx:.1f} {cy:.1f})" dy="3.5"' if upright else ""
                parts.append(f'<text class="bar-value" x="{cx:.1f}" y="{cy:.1f}" font-size="10"{turn} '
                             f'text-anchor="{"start" if upright else "middle"}" fill="{colour}">{_short_yuan(m[key])}</text>')
        parts.append(f'<text x="{x + bar_w:.1f}" y="{height - 10}" font-size="11" text-anchor="middle">{_month_label(m["month"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _month_label(month: int) -> str:
    return f"{month}月" if month <= 12 else f"次年{month - 12}月"


def _area_picker(report: Report, within: str | None = None) -> str:
    """A GET form: the area (every registered province, city and county, indented under its
    parent, and all areas; with ``within``, that area and those under it only: a county token's
    user is offered no other county) and the level of the rows; the page is rendered again for the choice."""
    areas = report.state.areas if report.state is not None else {}
    children: dict[str | None, list[str]] = {}
    for code, (_name, level, parent, _position) in areas.items():  # registration order
        if level_rank(level) < level_rank("township"):
            children.setdefault(parent if parent in areas else None, []).append(code)
    chosen = report.area["code"] if report.area else ""
    options = [] if within else [f'<option value=""{" selected" if not chosen else ""}>全部地区</option>']
    seen: set[str] = set()

    def add(code: str, depth: int) -> None:
        if code in seen:  # a loop of parents: each area once
            return
        seen.add(code)
        name, level = areas[code][0], areas[code][1]
        selected = " selected" if code == chosen else ""
        options.append(f'<option value="{escape(code)}"{selected}>{"　" * depth}{escape(name)}（{LEVEL_ZH[level]}）</option>')
        for child in children.get(code, []):
            add(child, depth + 1)

    for top in [within] if within in areas else [] if within else children.get(None, []):
        add(top, 0)
    levels = "".join(f'<option value="{level}"{" selected" if level == report.level else ""}>{LEVEL_ZH[level]}</option>'
                     for level in LEVELS[: level_rank("township") + 1])
    return (f'<form id="area-picker" method="get" action="/dashboard"><input type="hidden" name="year" value="{report.programme_year}">'
            f'<label for="area">地区</label> <select id="area" name="area">{"".join(options)}</select> '
            f'<label for="level">按</label> <select id="level" name="level">{levels}</select> '
            f'<button type="submit">查看</button></form>')


def render(report: Report, years: list[int], *, as_of: datetime | None = None, signed_in: bool = False,
           within: str | None = None) -> str:
    """The page; ``as_of`` is when the figures were read (now by default), shown with the log head
    they come from; ``signed_in`` adds the logout button (a cookie session, see api.py); ``within``:
    the area the reader may see (a county token's), the only one the area picker offers with those under it."""
    total = report.total
    as_of_text = (as_of or datetime.now(CST)).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
    logout = ('<form method="post" action="/logout" style="float:right"><button type="submit">退出 / Log out</button></form>'
              if signed_in else "")
    loss = total.derived()["loss_ratio"]
    rows_html = "".join(
        f'<tr class="township-row"><td>{escape(r.township_name)}</td><td>{r.figures.target_total}</td>'
        f"<td>{r.figures.policies}</td><td>{r.policies_government_all}</td><td>{r.figures.policies_self}</td>"
        f'<td>{percent(r.derived()["completion_rate"])}</td><td>{r.figures.insured_persons}</td>'
        f"<td>{yuan_grouped(r.figures.premium_fen)}</td><td>{r.figures.claims_paid}</td>"
        f'<td>{yuan_grouped(r.figures.claims_paid_fen)}</td><td>{percent(r.derived()["loss_ratio"])}</td></tr>'
        for r in report.rows
    )
    where = f"&amp;area={quote(report.area['code'])}" if report.area else ""
    year_links = " ".join(f'<a href="?year={y}{where}">{y}</a>' for y in years)
    unit = LEVEL_ZH.get(report.level, "地区")
    place = escape(report.area["name"]) if report.area else ""
    own_target = ("" if total.area_target is None else  # set on the area itself: beside the sum of its townships', not in it
                  f'<div class="kpi">本级下达任务数<b id="kpi-area-target">{total.area_target[0]}</b></div>')
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{report.programme_year}年计生家庭意外伤害保险 · 关怀</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} .total td {{ font-weight: bold; background: #f3f3f3; }}
.kpi {{ display: inline-block; margin-right: 32px; }} .kpi b {{ font-size: 24px; display: block; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }}
.note {{ color: #666; font-size: 12px; }}
</style></head><body>{logout}
<h1>{place}{report.programme_year}年计生家庭意外伤害保险工作完成情况</h1>
{_area_picker(report, within)}
<p class="note">年度：{year_links} · 数据口径：{escape(report.basis)}</p>
<p class="note" id="data-as-of">数据截至 / data as of：{as_of_text}（北京时间）· 日志头 / log head <code>{escape(report.log_head or "—")}</code></p>
<div>
<div class="kpi">指导任务数<b id="kpi-target">{total.figures.target_total}</b></div>{own_target}
<div class="kpi">已投保户数<b id="kpi-policies">{total.figures.policies}</b></div>
<div class="kpi">完成率<b id="kpi-completion">{percent(total.derived()["completion_rate"])}</b></div>
<div class="kpi">参保人数<b>{total.figures.insured_persons}</b></div>
<div class="kpi">保费（元）<b>{yuan_grouped(total.figures.premium_fen)}</b></div>
<div class="kpi">赔付率<b id="kpi-loss-ratio">{percent(loss)}</b></div>
</div>
<p class="note" id="loss-ratio-rule">{LOSS_RATIO_RULE_ZH}：{yuan_grouped(total.figures.claims_paid_fen)} ÷ {yuan_grouped(total.figures.premium_fen)}</p>
<h2>各{unit}完成率（对照指导任务数）</h2>{_completion_chart(report)}
<h2>投保方式</h2><p class="legend"><span style="background:{GOV}"></span>政府投保<span style="background:{SELF}"></span>自主投保</p>{_payer_chart(report)}
<h2>按月保费与赔付（元）</h2><p class="legend"><span style="background:{BAR}"></span>保费<span style="background:{CLAIMS}"></span>赔付</p>{_monthly_chart(report)}
<h2>明细</h2>
<table id="township-table"><thead><tr><th>{unit}</th><th>指导任务数</th><th>已投保户数</th><th>政府投保</th><th>自主投保</th><th>完成率</th>
<th>参保人数</th><th>保费(元)</th><th>赔付件数</th><th>赔付金额(元)</th><th>赔付率</th></tr></thead>
<tbody>{rows_html}<tr class="total"><td>{escape(total.township_name)}</td><td>{total.figures.target_total}</td><td>{total.figures.policies}</td>
<td>{total.policies_government_all}</td><td>{total.figures.policies_self}</td><td>{percent(total.derived()["completion_rate"])}</td>
<td>{total.figures.insured_persons}</td><td>{yuan_grouped(total.figures.premium_fen)}</td><td>{total.figures.claims_paid}</td>
<td>{yuan_grouped(total.figures.claims_paid_fen)}</td><td>{percent(loss)}</td></tr></tbody></table>
<p class="note" id="log-head">日志头 / log head：<code>{escape(report.log_head or "—")}</code></p>
<p class="note">接口：<a href="/api/report?year={report.programme_year}{where}&amp;level={report.level}">JSON</a> · <a href="/api/report?year={report.programme_year}{where}&amp;level={report.level}&amp;format=csv">CSV</a> · <a href="/openapi.json">OpenAPI</a></p>
</body></html>"""


def login_page(*, wrong: bool = False) -> str:
    """The login form of a deployment with GUANHUAI_API_TOKEN: the token is posted once and
    exchanged for an HttpOnly session cookie (api.py)."""
    problem = '<p class="problem" role="alert">令牌不对 / wrong token</p>' if wrong else ""
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>登录 / Log in · 关怀</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", sans-serif; margin: 48px; color: #222; }}
form {{ max-width: 360px; }} label, input, button {{ display: block; margin: 8px 0; font-size: 15px; }}
input {{ width: 100%; padding: 6px; }} .problem {{ color: #c0392b; }}
</style></head><body>
<h1>关怀 · 报表登录 / Log in</h1>{problem}
<form method="post" action="/login">
<label for="token">访问令牌 / access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">登录 / Log in</button>
</form>
<p>令牌由系统管理员提供（GUANHUAI_API_TOKEN）。/ Ask your administrator for the token (GUANHUAI_API_TOKEN).</p>
</body></html>"""
