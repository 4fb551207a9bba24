"""Prompt files: .txt / .csv / .tsv / .jsonl, id and prompt columns, and the exact FILE:LINE error texts."""

import json

import pytest

from ivmixed.prompts import PromptFileError, PromptItem, file_stem, items_from_prompts, read_prompts


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_text(path, **kwargs):
    with pytest.raises(PromptFileError) as info:
        read_prompts(path, **kwargs)
    return str(info.value)


# -- reading -------------------------------------------------------------------------------------------


def test_txt_one_prompt_a_line_ids_are_item_numbers_trailing_blank_lines_ignored(tmp_path):
    path = write(tmp_path, "p.txt", "a bright blob moving right\n  a dark blob moving left  \n\n\n")
    items = read_prompts(path)
    assert [(i.id, i.prompt, i.line) for i in items] == [
        ("00001", "a bright blob moving right", 1),
        ("00002", "a dark blob moving left", 2),
    ]
    assert items[0].source == str(path)


def test_chronomagic_csv_as_it_is(tmp_path):
    # the header and quoting of prompts/Captions_ChronoMagic-Bench.csv (PKU-YuanGroup/ChronoMagic-Bench)
    path = write(
        tmp_path,
        "Captions_ChronoMagic-Bench-150.csv",
        "videoid,name,sub_category,main_category\n"
        '3d_printing_19,"Time-lapse of a 3D printing process, starting from initial setup,\nending complete.",3d_printing,human_creation\n'
        'day2night_13.0,"Time-lapse of the sky transitioning from day to night.",day2night,meteorological\n',
    )
    items = read_prompts(path, prompt_column="name", id_column="videoid")
    assert [i.id for i in items] == ["3d_printing_19", "day2night_13.0"]
    assert items[0].prompt.startswith("Time-lapse of a 3D printing process, starting") and "\n" in items[0].prompt
    assert [i.line for i in items] == [2, 4]  # a quoted field over two lines: the next row starts on line 4


def test_msrvtt_style_csv_finds_the_sentence_column_itself(tmp_path):
    path = write(tmp_path, "msrvtt.csv", "key,vid_key,video_id,sentence\nret0,msr7010,video7010,a man is talking\n")
    (item,) = read_prompts(path, id_column="video_id")
    assert (item.id, item.prompt) == ("video7010", "a man is talking")


def test_tsv_and_byte_order_mark(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes("\ufeffid\tcaption\nx1\ta blob\n".encode("utf-8"))
    (item,) = read_prompts(path, id_column="id")
    assert (item.id, item.prompt) == ("x1", "a blob")


def test_jsonl_objects_and_strings_blank_lines_skipped(tmp_path):
    path = write(tmp_path, "p.jsonl", '{"prompt": "a blob", "id": 7}\n\n{"prompt": "another blob", "id": "b"}\n')
    items = read_prompts(path, id_column="id")
    assert [(i.id, i.prompt, i.line) for i in items] == [("7", "a blob", 1), ("b", "another blob", 3)]
    path = write(tmp_path, "s.jsonl", '"one"\n"two"\n')
    assert [(i.id, i.prompt) for i in read_prompts(path)] == [("00001", "one"), ("00002", "two")]


def test_format_option_overrides_the_suffix(tmp_path):
    path = write(tmp_path, "prompts.list", "a blob\n")
    assert read_prompts(path, format="txt")[0].prompt == "a blob"


def test_file_stems_are_one_to_one_and_never_hidden():
    assert file_stem("3d_printing_19") == "3d_printing_19"
    assert file_stem("a/b c") == "a~2fb~20c"
    assert file_stem(".hidden") == "~2ehidden"
    assert file_stem("é") == "~c3~a9"
    assert file_stem("a~2f") == "a~7e2f" != file_stem("a/")


def test_items_from_a_python_list():
    items = items_from_prompts(["a blob", "b blob"])
    assert [(i.id, i.prompt) for i in items] == [("00001", "a blob"), ("00002", "b blob")]
    kept = items_from_prompts([PromptItem("x", "a blob")])
    assert kept[0].id == "x"


# -- errors: pinned texts --------------------------------------------------------------------------------


def test_txt_empty_prompt(tmp_path):
    path = write(tmp_path, "p.txt", "a blob\n\nanother blob\n")
    assert error_text(path) == f"{path}:2: empty prompt (a blank line; every line of a .txt prompt file is one prompt)"


def test_csv_missing_prompt_column(tmp_path):
    path = write(tmp_path, "c.csv", "videoid,name\nx,a blob\n")
    assert error_text(path) == (
        f"{path}:1: no prompt column: none of prompt, caption, text, sentence is present; the columns are: videoid, name; "
        "name one with --prompt-column"
    )
    assert error_text(path, prompt_column="name", id_column="vid") == f"{path}:1: no id column 'vid'; the columns are: videoid, name"
    path = write(tmp_path, "c.json", '[{"prompt_cn": "x"}]')
    assert error_text(path) == (
        f"{path}:1: no prompt column: none of prompt, caption, text, sentence, prompt_en is present; the columns are: prompt_cn; "
        "name one with --prompt-column"
    )


def test_csv_empty_prompt_duplicate_id_short_row(tmp_path):
    path = write(tmp_path, "c.csv", "id,prompt\na,one\nb,\n")
    assert error_text(path, id_column="id") == f"{path}:3: empty prompt (column 'prompt')"
    path = write(tmp_path, "d.csv", "id,prompt\na,one\nb,two\na,three\n")
    assert error_text(path, id_column="id") == f"{path}:4: duplicate id 'a' (first on line 2)"
    path = write(tmp_path, "e.csv", "id,prompt\na,one\nb\n")
    assert error_text(path, id_column="id") == f"{path}:3: the row has 1 fields but the header has 2"
    path = write(tmp_path, "f.csv", "id,prompt\na,one\n,two\n")
    assert error_text(path, id_column="id") == f"{path}:3: empty id (column 'id')"


def test_ids_that_differ_only_in_case_collide(tmp_path):
    path = write(tmp_path, "c.csv", "id,prompt\nAbc,one\nabc,two\n")
    assert error_text(path, id_column="id") == (
        f"{path}:3: id 'abc' differs from 'Abc' (line 2) only in case; their files would collide on case-insensitive file systems"
    )


def test_jsonl_malformed_line_and_missing_key(tmp_path):
    path = write(tmp_path, "p.jsonl", '{"prompt": "a blob"}\n{"prompt": "b blob",}\n')
    assert error_text(path) == f"{path}:2: malformed JSON: Expecting property name enclosed in double quotes (column 21)"
    path = write(tmp_path, "q.jsonl", '{"prompt": "a blob"}\n{"caption": "b blob"}\n')
    assert error_text(path) == f"{path}:2: no key 'prompt'; the keys are: caption"
    path = write(tmp_path, "r.jsonl", '{"prompt": "a blob", "id": 1}\n{"prompt": "", "id": 2}\n')
    assert error_text(path, id_column="id") == f"{path}:2: empty prompt (key 'prompt')"
    path = write(tmp_path, "s.jsonl", '{"prompt": "a", "id": 1}\n{"prompt": "b", "id": 1}\n')
    assert error_text(path, id_column="id") == f"{path}:2: duplicate id '1' (first on line 1)"
    path = write(tmp_path, "t.jsonl", "[1, 2]\n")
    assert error_text(path) == f"{path}:1: expected a JSON object or string, got a list"
    path = write(tmp_path, "u.jsonl", json.dumps({"prompt": 3}) + "\n")
    assert error_text(path) == f"{path}:1: the prompt 'prompt' is a number, expected text"


def test_unknown_type_empty_file_missing_file(tmp_path):
    path = write(tmp_path, "p.yaml", "- a\n")
    assert error_text(path) == f"{path}: unknown prompt file type '.yaml'; use one of .txt, .csv, .tsv, .jsonl, .json (or name the format)"
    path = write(tmp_path, "e.txt", "\n\n")
    assert error_text(path) == f"{path}: no prompts in the file"
    with pytest.raises(FileNotFoundError, match="prompt file .*nope.txt does not exist"):
        read_prompts(tmp_path / "nope.txt")


def test_columns_are_refused_for_txt(tmp_path):
    path = write(tmp_path, "p.txt", "a\n")
    assert error_text(path, id_column="id") == (
        f"{path}: a .txt prompt file has no columns; --prompt-column/--id-column need a .csv, .tsv, .jsonl or .json file"
    )


def test_not_utf8(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"a blob\nb \xff blob\n")
    assert error_text(path) == f"{path}:2: not UTF-8 text (invalid start byte at byte 9)"


# -- benchmark prompt sets in their published formats (made-up prompts, the files' exact layouts) ---------


def test_vbench_prompt_txt_files_one_prompt_a_line_last_line_without_newline(tmp_path):
    # prompts/all_dimension.txt, prompts_per_dimension/<dimension>.txt: plain lines, some files end without "\n",
    # and all_dimension.txt repeats a prompt that belongs to two dimensions
    path = write(tmp_path, "all_dimension.txt", "In a still frame, a red kettle\na kettle, frozen in time\nIn a still frame, a red kettle\na green kettle")
    items = read_prompts(path)
    assert [(i.id, i.prompt) for i in items] == [
        ("00001", "In a still frame, a red kettle"),
        ("00002", "a kettle, frozen in time"),
        ("00003", "In a still frame, a red kettle"),
        ("00004", "a green kettle"),
    ]


VBENCH_FULL_INFO = """[
    {
        "prompt_en": "In a still frame, a red kettle",
        "dimension": [
            "temporal_flickering"
        ]
    },
    {
        "prompt_en": "a person juggling in a park",
        "dimension": [
            "subject_consistency",
            "dynamic_degree",
            "motion_smoothness"
        ]
    },
    {
        "prompt_en": "a green kettle",
        "dimension": [
            "color"
        ],
        "auxiliary_info": {
            "color": {
                "color": "green"
            }
        }
    },
    {
        "prompt_en": "In a still frame, a red kettle",
        "dimension": [
            "overall_consistency"
        ]
    }
]
"""


def test_vbench_full_info_json_all_records_in_file_order(tmp_path):
    # vbench/VBench_full_info.json: an indented array of {prompt_en, dimension, auxiliary_info}, in the order of all_dimension.txt
    path = write(tmp_path, "VBench_full_info.json", VBENCH_FULL_INFO)
    items = read_prompts(path)
    assert [(i.id, i.prompt, i.line) for i in items] == [
        ("00001", "In a still frame, a red kettle", 2),
        ("00002", "a person juggling in a park", 8),
        ("00003", "a green kettle", 16),
        ("00004", "In a still frame, a red kettle", 27),
    ]
    # the same text on one line (the file's older form) reads the same, every record on line 1
    flat = write(tmp_path, "flat.json", json.dumps(json.loads(VBENCH_FULL_INFO)))
    assert [(i.id, i.prompt, i.line) for i in read_prompts(flat)] == [(i.id, i.prompt, 1) for i in items]


def test_vbench_full_info_one_dimension_keeps_the_records_positions_as_ids(tmp_path):
    path = write(tmp_path, "VBench_full_info.json", VBENCH_FULL_INFO)
    assert [(i.id, i.prompt) for i in read_prompts(path, dimension="dynamic_degree")] == [("00002", "a person juggling in a park")]
    assert [i.id for i in read_prompts(path, dimension="overall_consistency")] == ["00004"]
    assert error_text(path, dimension="colour") == (
        f"{path}: no prompt has the dimension 'colour'; the dimensions are: temporal_flickering, subject_consistency, "
        "dynamic_degree, motion_smoothness, color, overall_consistency"
    )
    txt = write(tmp_path, "color.txt", "a green kettle\n")
    assert error_text(txt, dimension="color") == (
        f"{txt}: a .txt prompt file has no dimension lists; dimension='color' needs VBench's full-info .json"
    )
    plain = write(tmp_path, "plain.json", '[{"prompt": "a kettle"}]')
    assert error_text(plain, dimension="color") == (
        f"{plain}:1: no 'dimension' list of names to select 'color' by (VBench's full-info files have one)"
    )


def test_chronomagic_full_csv_header_with_an_empty_category(tmp_path):
    # prompts/Captions_ChronoMagic-Bench.csv: the same four columns; some rows leave main_category empty
    path = write(
        tmp_path,
        "Captions_ChronoMagic-Bench.csv",
        "videoid,name,sub_category,main_category\n"
        'ice_melting_03,"Time-lapse of an ice cube melting on a plate, from a sharp cube to a puddle.",ice_melting,physical\n'
        'sprouting_11.2,"Time-lapse of a bean sprouting: the seed splits, a root grows, two leaves open.",sprouting,\n',
    )
    items = read_prompts(path, prompt_column="name", id_column="videoid")
    assert [(i.id, i.stem, i.line) for i in items] == [("ice_melting_03", "ice_melting_03", 2), ("sprouting_11.2", "sprouting_11.2", 3)]
    assert items[1].prompt == "Time-lapse of a bean sprouting: the seed splits, a root grows, two leaves open."


def test_chronomagic_caption_list_json(tmp_path):
    # UMT/main/data/chronomagic_150.json: an array of {caption_id, video, caption}
    records = [
        {"caption_id": "ice_melting_03", "video": "ice_melting_03.mp4", "caption": "Time-lapse of an ice cube melting."},
        {"caption_id": "sprouting_11.2", "video": "sprouting_11.2.mp4", "caption": "Time-lapse of a bean sprouting."},
    ]
    path = write(tmp_path, "chronomagic_150.json", json.dumps(records, indent=4))
    items = read_prompts(path, id_column="caption_id")
    assert [(i.id, i.prompt, i.line) for i in items] == [
        ("ice_melting_03", "Time-lapse of an ice cube melting.", 2),
        ("sprouting_11.2", "Time-lapse of a bean sprouting.", 7),
    ]


def test_json_array_errors_name_the_line(tmp_path):
    path = write(tmp_path, "p.json", '[\n  {"prompt": "a"},\n  {"prompt": "b",}\n]\n')
    assert error_text(path) == f"{path}:3: malformed JSON: Expecting property name enclosed in double quotes (column 18)"
    path = write(tmp_path, "q.json", '{"prompt": "a"}')
    assert error_text(path) == f"{path}: expected a JSON array of prompts (objects or strings), got an object"
    path = write(tmp_path, "r.json", '[\n  {"prompt": "a", "id": 1},\n  {"prompt": "b", "id": 1}\n]')
    assert error_text(path, id_column="id") == f"{path}:3: duplicate id '1' (first on line 2)"
    path = write(tmp_path, "s.json", '[\n  "one",\n\n  ""\n]')
    assert error_text(path) == f"{path}:4: empty prompt"
    path = write(tmp_path, "t.json", "[]")
    assert error_text(path) == f"{path}: no prompts in the file"
