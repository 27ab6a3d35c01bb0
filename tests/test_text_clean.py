"""Gutenberg header/footer stripping (real ebooks + every historical marker), NFC, control
characters, chunking and dedupe."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlprep.text.clean import (
    chunk_paragraphs,
    clean_text,
    normalize_newlines,
    strip_gutenberg,
)


def _lines(body: str) -> list[str]:
    return body.split("\n")


def test_strip_real_alice_2016_file(realdata: Path) -> None:
    raw = (realdata / "gutenberg/11-0.txt").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw  # BOM + CRLF, as upstream
    pg = strip_gutenberg(raw.decode("utf-8"))
    lines = _lines(pg.body)
    assert lines[0] == "ALICE\u2019S ADVENTURES IN WONDERLAND"
    assert lines[-1] == "              THE END"
    assert lines[2] == "Lewis Carroll" and lines[9] == "CHAPTER I. Down the Rabbit-Hole"
    assert "\r" not in pg.body and "\ufeff" not in pg.body
    assert "Project Gutenberg" not in pg.body and "*** " not in pg.body
    assert (pg.title, pg.author, pg.language, pg.ebook_id) == (
        "Alice\u2019s Adventures in Wonderland", "Lewis Carroll", "English", 11)
    assert pg.found_start and pg.found_end and "Project Gutenberg License" in pg.license


def test_strip_real_pride_and_prejudice_2023_file(realdata: Path) -> None:
    pg = strip_gutenberg((realdata / "gutenberg/pg1342.txt").read_text(encoding="utf-8"))
    lines = _lines(pg.body)
    assert lines[0] == "                            [Illustration:"
    assert lines[-1] == "                  TOOKS COURT, CHANCERY LANE, LONDON."
    assert lines[-2] == "             CHISWICK PRESS:--CHARLES WHITTINGHAM AND CO."
    assert "It is a truth universally acknowledged, that a single man in possession" in pg.body
    assert "Project Gutenberg" not in pg.body and "START OF" not in pg.body
    assert (pg.title, pg.author, pg.language, pg.ebook_id) == (
        "Pride and Prejudice", "Jane Austen", "English", 1342)


BODY = "CHAPTER I\n\nIt was a dark and stormy night; the rain fell in torrents.\n\n    THE END"
START_MARKERS = [
    "*** START OF THE PROJECT GUTENBERG EBOOK A TALE ***",
    "*** START OF THIS PROJECT GUTENBERG EBOOK A TALE ***",
    "***START OF THE PROJECT GUTENBERG EBOOK A TALE***",
    " *** START OF THIS PROJECT GUTENBERG EBOOK A TALE ***",
    "*** START OF THE COPYRIGHTED PROJECT GUTENBERG EBOOK A TALE ***",
    "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
    "*END THE SMALL PRINT! FOR PUBLIC DOMAIN EBOOKS*Ver.02/11/02*END*",
]
END_MARKERS = [
    "*** END OF THE PROJECT GUTENBERG EBOOK A TALE ***",
    "*** END OF THIS PROJECT GUTENBERG EBOOK A TALE ***",
    "***END OF THE PROJECT GUTENBERG EBOOK A TALE***",
    "            *** END OF THE PROJECT GUTENBERG EBOOK A TALE ***",
    "End of the Project Gutenberg EBook of A Tale, by Anon",
    "End of The Project Gutenberg Etext of A Tale",
    "End of Project Gutenberg's A Tale, by Anon",
    "End of this Project Gutenberg Etext of A Tale",
    "END OF PROJECT GUTENBERG'S A TALE",
    "*** END OF THE COPYRIGHTED PROJECT GUTENBERG EBOOK A TALE ***",
    "Ende dieses Projekt Gutenberg Etextes A Tale",
]
HEADER = ("The Project Gutenberg EBook of A Tale, by Anon\n\nTitle: A Tale\n\nAuthor: Anon\n\n"
          "Release Date: May 1, 2001 [EBook #2701]\n\nLanguage: English\n\n")
FOOTER = "\n\n***** This file should be named 2701.txt *****\nUpdated editions will replace...\n"


@pytest.mark.parametrize("start", START_MARKERS)
@pytest.mark.parametrize("newline,bom", [("\n", ""), ("\r\n", "\ufeff"), ("\r", "")])
def test_every_start_marker(start: str, newline: str, bom: str) -> None:
    text = bom + HEADER + start + "\n\n\n" + BODY + "\n\n\n" + END_MARKERS[0] + FOOTER
    pg = strip_gutenberg(text.replace("\n", newline))
    assert pg.body == BODY
    assert pg.title == "A Tale" and pg.author == "Anon" and pg.ebook_id == 2701


@pytest.mark.parametrize("end", END_MARKERS)
def test_every_end_marker(end: str) -> None:
    text = HEADER + START_MARKERS[0] + "\n" + BODY + "\n\n" + end + FOOTER
    assert strip_gutenberg(text).body == BODY


def test_small_print_after_start_marker_and_first_end_wins() -> None:
    # 1990s layout: START, then the small-print licence, then the text; the "End of ..." line
    # comes before the "*** END" line (like the real 11-0.txt).
    text = ("*** START OF THE PROJECT GUTENBERG EBOOK A TALE ***\n"
            "**The Project Gutenberg Etext of A Tale**\n*SMALL PRINT! legalese\nmore legalese\n"
            "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n" + BODY +
            "\n\nEnd of the Project Gutenberg EBook of A Tale\n\n"
            "*** END OF THE PROJECT GUTENBERG EBOOK A TALE ***\n" + FOOTER)
    assert strip_gutenberg(text).body == BODY


@pytest.mark.parametrize("credits", [
    "Produced by John Smith and the Online Distributed\nProofreading Team at http://www.pgdp.net",
    "Produced by Jane Doe, Distributed Proofreaders",
    "E-text prepared by the Project Gutenberg Online Distributed Proofreading Team",
    "This etext was prepared by Judy Boss, Omaha, Nebraska.",
    "Transcribed from the 1865 Macmillan edition by David Price, email ccx074@pglaf.org",
    "Produced by An Anonymous Volunteer\n\n\n\nDistributed Proofreaders Europe, http://dp.rastko.net",
])
def test_credit_lines_after_start_are_removed(credits: str) -> None:
    text = (HEADER + START_MARKERS[1] + "\r\n\r\n\r\n" + credits.replace("\n", "\r\n") +
            "\r\n\r\n\r\n\r\n" + BODY + "\r\n\r\n" + END_MARKERS[1])
    assert strip_gutenberg(text).body == BODY


def test_body_that_starts_like_prose_is_kept() -> None:
    body = "Produce was scarce that year.\n\nThe farmers came to town."
    text = HEADER + START_MARKERS[0] + "\n\n" + body + "\n\n" + END_MARKERS[0]
    assert strip_gutenberg(text).body == body


def test_old_world_library_notices_inside_the_text_are_removed() -> None:
    notice = ("<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS OF WILLIAM\nSHAKESPEARE IS "
              "COPYRIGHT 1990-1993 BY WORLD LIBRARY, INC.\nSERVICE THAT CHARGES FOR DOWNLOAD "
              "TIME OR FOR MEMBERSHIP.>>")
    text = (START_MARKERS[0] + "\nACT I\n\n" + notice + "\n\nSCENE I. Elsinore.\n" +
            END_MARKERS[0])
    assert strip_gutenberg(text).body == "ACT I\n\n\nSCENE I. Elsinore."


def test_text_without_markers_is_kept_whole() -> None:
    pg = strip_gutenberg("\ufeffJust some text\r\nwith two lines\r\n")
    assert pg.body == "Just some text\nwith two lines"
    assert not pg.found_start and not pg.found_end and pg.license == ""


def test_clean_text_nfc_and_control_characters() -> None:
    # e + combining acute, u + diaeresis, Angstrom sign
    decomposed = "Cafe\u0301 Zu\u0308rich \u212b"
    assert clean_text(decomposed) == "Caf\u00e9 Z\u00fcrich \u00c5"
    assert clean_text(decomposed, normalize="none") == decomposed
    assert clean_text("\ufeffa\r\nb\rc\x00d\x07e\x1bf\x85g\x7f\th\ufeff") == "a\nb\ncdefg\th"
    assert clean_text("a\r\nb\x00", control=False) == "a\r\nb\x00"
    assert clean_text("\uff21\u2460", normalize="NFKC") == "A1"
    assert clean_text("a\ud800b\udfff") == "a\ufffdb\ufffd"  # lone surrogates from JSON
    assert normalize_newlines("\ufeffx\r\ny") == "x\ny"


def test_chunk_paragraphs_cuts_only_at_paragraph_breaks() -> None:
    paras = [f"Paragraph {i} " + "word " * (i % 7 + 3) for i in range(60)]
    text = "\n\n".join(paras)
    pieces = chunk_paragraphs(text, 200)
    assert "".join(pieces) == text and len(pieces) > 5
    assert all(len(p) >= 200 for p in pieces[:-1])
    assert all(p.startswith("Paragraph ") for p in pieces)
    assert chunk_paragraphs(text, 0) == [text] and chunk_paragraphs("", 10) == []
