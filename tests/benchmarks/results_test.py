import os
import tempfile
import unittest

from benchmarks import results

DOC = (
    "# Benchmark results\n\nIntro.\n\n"
    "## alpha\n\n### alpha.py, old\n\n| a |\n| 1 |\n\n"
    "## alpha --mode\n\nother mode\n\n"
    "## beta\n\nbeta's table\n"
)


class ReplaceSectionTest(unittest.TestCase):
    def test_replaces_only_its_section_up_to_the_next_heading(self):
        got = results.replace_section(
            DOC, "alpha", "\n### alpha.py, new\n\n| 2 |\n"
        )
        self.assertEqual(
            got,
            "# Benchmark results\n\nIntro.\n\n"
            "## alpha\n\n### alpha.py, new\n\n| 2 |\n\n"
            "## alpha --mode\n\nother mode\n\n"
            "## beta\n\nbeta's table\n",
        )

    def test_a_heading_that_only_starts_alike_is_another_section(self):
        got = results.replace_section(DOC, "alpha --mode", "new mode")
        self.assertIn("## alpha\n\n### alpha.py, old\n", got)
        self.assertIn("## alpha --mode\n\nnew mode\n\n## beta\n", got)
        self.assertEqual(got.count("## alpha --mode"), 1)

    def test_the_last_section_is_replaced_to_the_end(self):
        got = results.replace_section(DOC, "beta", "new beta")
        self.assertTrue(got.endswith("## beta\n\nnew beta\n"))
        self.assertNotIn("beta's table", got)

    def test_a_new_section_is_appended(self):
        got = results.replace_section(DOC, "gamma", "\n\ngamma's table\n\n")
        self.assertEqual(got, DOC + "\n## gamma\n\ngamma's table\n")
        self.assertEqual(
            results.replace_section("", "gamma", "g"), "## gamma\n\ng\n"
        )

    def test_record_section_rewrites_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "RESULTS.md")
            with open(path, "w") as f:
                f.write(DOC)
            results.record_section("alpha", "first", path)
            results.record_section("alpha", "second", path)
            with open(path) as f:
                got = f.read()
        self.assertEqual(got.count("## alpha\n"), 1)
        self.assertIn("## alpha\n\nsecond\n\n## alpha --mode\n", got)
        self.assertNotIn("first", got)
