"""`tffm train`'s flags are TrainConfig's fields: names, choices, defaults."""

import argparse
import dataclasses

from tffm import testing
from tffm.cli import build_parser
from tffm.train.config import AUTO
from tffm.train.config import TrainConfig


def train_actions():
    parser = build_parser()
    (subparsers,) = [
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ]
    train = subparsers.choices["train"]
    return {a.dest: a for a in train._actions}


class TrainFlagsTest(testing.TestCase):
    def test_every_flagged_field_has_its_flag_choices_and_default(self):
        actions = train_actions()
        for field in dataclasses.fields(TrainConfig):
            if not field.metadata["flag"]:
                self.assertNotIn(field.name, actions, field.name)
                continue
            action = actions[field.name]
            self.assertEqual(
                action.option_strings[0],
                "--" + field.name.replace("_", "-"),
            )
            # None = "not given": a config file's value is kept.
            self.assertIsNone(action.default, field.name)
            choices = field.metadata["choices"]
            default = (
                field.default_factory()
                if field.default is dataclasses.MISSING
                else field.default
            )
            if choices and field.type is not bool:
                # An option left to its default takes "auto" back too.
                if default is AUTO:
                    choices = (*choices, "auto")
                self.assertEqual(tuple(action.choices), choices, field.name)
            if default is AUTO:
                shown = "auto: by task and model"
            elif isinstance(default, list):
                shown = ",".join(map(str, default)) or "none"
            else:
                shown = "none" if default is None else str(default)
            self.assertIn(f"(default: {shown}", action.help, field.name)

    def test_flags_given_become_the_config(self):
        from tffm.cli.flags import config_from_args

        args = build_parser().parse_args(
            [
                "train",
                "--data",
                "a.tsv",
                "b.tsv",
                "--format",
                "criteo",
                "--hidden-units",
                "64,32",
                "--no-batch-norm",
                "--learning-rate",
                "0.02",
                "--task",
                "regression",
                "--schedule",
                "cosine",
                "--linear-l2",
                "0.05",
            ]
        )
        config = config_from_args(args)
        self.assertEqual(config.data, ["a.tsv", "b.tsv"])
        self.assertEqual(config.hidden_units, [64, 32])
        self.assertIs(config.batch_norm, False)
        self.assertEqual(config.learning_rate, 0.02)
        self.assertEqual(config.schedule, "cosine")
        self.assertEqual(config.linear_l2, 0.05)
        # Not given: the default model and the defaults by task and model.
        self.assertEqual(config.model, "fm")
        self.assertEqual(
            config, TrainConfig.from_dict(config.to_dict(), source="again")
        )

    def test_auto_on_the_command_line_is_the_default(self):
        from tffm.cli.flags import config_from_args

        args = build_parser().parse_args(
            ["train", "--format", "criteo", "--model", "deepfm"]
            + ["--table-l2", "auto", "--learning-rate", "auto"]
            + ["--monitor", "auto"]
        )
        config = config_from_args(args)
        given = TrainConfig(format="criteo", model="deepfm")
        self.assertIs(config.table_l2, AUTO)
        self.assertEqual(config.learning_rate, given.learning_rate)
        self.assertEqual(config.monitor, given.monitor)
        self.assertEqual(
            config.for_data(training_rows=10, table_rows=10).table_l2, 1e-3
        )

    def test_a_choice_outside_the_field_s_is_refused(self):
        with self.assertRaises(SystemExit):
            build_parser().parse_args(["train", "--schedule", "step"])
