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
    assert error_text(path) == f"{path}: unknown prompt file type '.yaml'; use one of .txt, .csv, .tsv, .jsonl (or name the format)"
    path = write(tmp_path, "e.txt", "\n\n")
    assert error_text(path) == f"{path}: no prompts in the file"
    with pytest.raises(FileNotFoundError, match="prompt file .*nope.txt does not exist"):
        read_prompts(tmp_path / "nope.txt")


def test_columns_are_refused_for_txt(tmp_path):
    path = write(tmp_path, "p.txt", "a\n")
    assert error_text(path, id_column="id") == (
        f"{path}: a .txt prompt file has no columns; --prompt-column/--id-column need a .csv, .tsv or .jsonl file"
    )


def test_not_utf8(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"a blob\nb \xff blob\n")
    assert error_text(path) == f"{path}:2: not UTF-8 text (invalid start byte at byte 9)"
