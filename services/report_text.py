"""Every string of the evidence report, in English and Chinese: one table, so a translation is checked whole.

The report is read by police investigators and prosecutors; the Chinese is written for them (证据包, 案件, 事由,
轨迹, 套牌, 同行车辆). The manifest, CSV and GeoJSON are machine data and stay English. `tests/test_evidence_report.py`
checks that both tables hold the same keys with the same placeholders.
"""
from __future__ import annotations

from typing import Literal

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")

EN: dict[str, str] = {
    "pdf_title": "Evidence package, case {ref}",
    "title": "Evidence package — case {ref}",
    "case_title": "Title: {title}",
    "reason": "Reason: {reason}",
    "header": "Owner: {owner}    Opened: {opened}    Status: {status}",
    "status_open": "open",
    "status_closed": "closed",
    "closed_by": " (closed {at} by {by})",
    "generated": "Generated {at} by {by}. Findings: {findings}; sightings: {sightings}; evidence crops: {crops}.",
    "zone": "Times are {zone} ({offsets}). sightings.csv and sightings.geojson keep UTC times (ISO 8601) as "
            "machine data.",
    "frames": "{statement}",
    "timeline": "Timeline",
    "more_in_csv": "… and {n} more in sightings.csv",
    "finding": "Finding {n}: {kind}",
    "kind_sighting": "Sighting",
    "kind_search": "Saved search",
    "kind_trajectory": "Trajectory",
    "kind_clone": "Cloned plate",
    "kind_cotravel": "Co-travel",
    "added": "Added {at} by {by}",
    "range": "Time range: {start} to {end}",
    "first_sighting": "the first sighting",
    "last_sighting": "the last sighting",
    "query": "Query: {query}",
    "note": "Note: {note}",
    "lost": "{missing} of the {named} sightings this finding named are no longer stored: removed by the retention "
            "policy or a purge between {added} (when it was added) and {generated} (this package). Their ids are "
            "listed in manifest.json.",
    "none_stored": "No sighting of it in this time range is stored now: any there were when the finding was added "
                   "were removed since by the retention policy or a purge.",
    "more_sightings": "… and {n} more sightings in sightings.csv",
    "vehicle": "vehicle",
    "person": "person",
    "face": "face",
    "camera": "Camera: {name} ({id})",
    "unknown": "unknown",
    "location": "Location: {location}",
    "unknown_camera": "unknown camera",
    "sighting": "Sighting {id}, detection score {score}, box in the frame {box} px",
    "frame_sha": "Frame SHA-256 (original not kept): {sha}",
    "frame_kept": "Frame SHA-256 (original in {file}, its hash checked): {sha}",
    "frame_shown": "The frame it was cut from ({file}), its box in red:",
    "not_recorded": "not recorded",
    "crop_sha": "Crop {file} SHA-256: {sha}",
    "crop_missing": "Evidence crop: missing",
    "role_route": "Route",
    "role_target": "Target",
    "role_companion": "Companion",
    "style_target": "red, wide solid line",
    "style_companion": "blue, narrow dashed line",
    "legend": "{role} {plate} ({style}), sightings: {n}",
    "legend_span": ", {start} to {end}",
    "legend_trips": "; {trips} trips, drawn apart (gaps over {gap} min)",
    "stops": "Stops of {plate}",
    "trip": "Trip {n}",
    "stop": "{n}. {at}   {camera}   ({location})",
    "clone_legs": "Conflicting sightings in time order, each from the one before:",
    "clone_leg": "{a} → {b}: {km} km apart, {apart} apart, implied speed {speed} km/h ({from_camera} → {to_camera})",
    "clone_leg_same_time": "{a} → {b}: {km} km apart at the same second: no one vehicle can be at both "
                           "({from_camera} → {to_camera})",
    "minutes": "{m} min {s} s",
    "hours": "{h} h {m} min",
    "seconds": "{s} s",
    "shared_cameras": "Shared cameras ({n}), passes within ±{window} s: {names}",
    "no_shared": "No camera passed by both within ±{window} s is stored now.",
    "shared_pass": "{camera}: {target} at {at}; {companion} {lag}",
    "lag_after": "{s} s later",
    "lag_before": "{s} s earlier",
    "lag_same": "at the same second",
    "mean_lag": "Mean lag: {companion} {lag}",
    "notes": "Case notes",
    "note_line": "{at}, {author}: {text}",
    "list_sep": ", ",
}

ZH: dict[str, str] = {
    "pdf_title": "证据包，案件 {ref}",
    "title": "证据包 — 案件 {ref}",
    "case_title": "案件名称：{title}",
    "reason": "事由：{reason}",
    "header": "承办人：{owner}    立案时间：{opened}    状态：{status}",
    "status_open": "办理中",
    "status_closed": "已结案",
    "closed_by": "（{at} 由 {by} 结案）",
    "generated": "生成时间：{at}，生成人：{by}。发现 {findings} 项；抓拍记录 {sightings} 条；证据截图 {crops} 张。",
    "zone": "本报告中的时间均为 {zone} 时间（{offsets}）。sightings.csv 与 sightings.geojson 为机读数据，"
            "时间一律为 UTC（ISO 8601 格式）。",
    # FRAMES_STATEMENT (services/evidence.py) in Chinese: change both together.
    "frames": "每条抓拍记录保留其证据截图（已收入本证据包并计算哈希值）以及入库时记录的原始画面 SHA-256 值。"
              "Sightline 仍保存原始画面的（上传的照片，且在原图保存期限内），原图收入 frames/ 目录，其 SHA-256 已与"
              "记录值核对一致；否则仅列出记录的哈希值，可据此核验原始画面提供方所持有的原件。",
    "timeline": "时间线",
    "more_in_csv": "……另有 {n} 条，见 sightings.csv",
    "finding": "发现 {n}：{kind}",
    "kind_sighting": "抓拍记录",
    "kind_search": "保存的检索",
    "kind_trajectory": "轨迹",
    "kind_clone": "套牌",
    "kind_cotravel": "同行车辆",
    "added": "{at} 由 {by} 添加",
    "range": "时间范围：{start} 至 {end}",
    "first_sighting": "首次抓拍",
    "last_sighting": "末次抓拍",
    "query": "查询条件：{query}",
    "note": "备注：{note}",
    "lost": "本项发现所列 {named} 条抓拍记录中，有 {missing} 条已不在库中：已在 {added}（添加本项时）至 {generated}"
            "（生成本证据包时）之间因保存期限策略或清除操作被删除。其编号列于 manifest.json。",
    "none_stored": "该时间范围内目前已无其抓拍记录：添加本项时存在的记录已因保存期限策略或清除操作被删除。",
    "more_sightings": "……另有 {n} 条抓拍记录，见 sightings.csv",
    "vehicle": "车辆",
    "person": "人员",
    "face": "人脸",
    "camera": "摄像头：{name}（{id}）",
    "unknown": "未知",
    "location": "地点：{location}",
    "unknown_camera": "未知摄像头",
    "sighting": "抓拍记录 {id}，检测置信度 {score}，目标在画面中的位置 {box}（像素）",
    "frame_sha": "原始画面 SHA-256（原图未保存）：{sha}",
    "frame_kept": "原始画面 SHA-256（原图见 {file}，哈希值已核验）：{sha}",
    "frame_shown": "截取该截图的原始画面（{file}），红框为目标位置：",
    "not_recorded": "未记录",
    "crop_sha": "截图 {file} SHA-256：{sha}",
    "crop_missing": "证据截图：缺失",
    "role_route": "轨迹",
    "role_target": "目标车辆",
    "role_companion": "同行车辆",
    "style_target": "红色粗实线",
    "style_companion": "蓝色细虚线",
    "legend": "{role} {plate}（{style}）：抓拍 {n} 次",
    "legend_span": "，{start} 至 {end}",
    "legend_trips": "；共 {trips} 段行程，分段绘制（间隔超过 {gap} 分钟即分段）",
    "stops": "{plate} 途经点位",
    "trip": "第 {n} 段行程",
    "stop": "{n}. {at}   {camera}   （{location}）",
    "clone_legs": "冲突抓拍（按时间顺序，每条与前一条相比）：",
    "clone_leg": "{a} → {b}：相距 {km} 公里，间隔 {apart}，推算车速 {speed} 公里/小时（{from_camera} → {to_camera}）",
    "clone_leg_same_time": "{a} → {b}：同一时刻相距 {km} 公里，同一车辆不可能同时出现在两地（{from_camera} → "
                           "{to_camera}）",
    "minutes": "{m} 分 {s} 秒",
    "hours": "{h} 小时 {m} 分",
    "seconds": "{s} 秒",
    "shared_cameras": "共同经过的摄像头（{n} 个，前后 {window} 秒内）：{names}",
    "no_shared": "目前库中没有二者在前后 {window} 秒内共同经过的摄像头。",
    "shared_pass": "{camera}：{target} 于 {at} 经过；{companion} {lag}",
    "lag_after": "晚 {s} 秒",
    "lag_before": "早 {s} 秒",
    "lag_same": "同一时刻经过",
    "mean_lag": "平均时间差：{companion} {lag}",
    "notes": "案件备注",
    "note_line": "{at}，{author}：{text}",
    "list_sep": "、",
}

TABLES: dict[str, dict[str, str]] = {"en": EN, "zh": ZH}


def report_text(lang: str, key: str, **values: object) -> str:
    """The report's string `key` in `lang`, filled in; an unknown language is English (checked at the edges)."""
    return TABLES.get(lang, EN)[key].format(**values)
