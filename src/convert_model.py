"""Rewrite a model file you trust as one that loads without running code.

Usage: python src/convert_model.py OLD.pt NEW.pt --trust

Every reader of this project refuses a checkpoint that names Python objects beyond tensors and plain values
(bloodcells.models.checkpoints). Checkpoints this project wrote load as they are; one from an older or modified version that
holds numpy arrays or scalars is refused. If you made that file yourself, --trust reads it with the same weights-only
unpickler, numpy's data constructors allowed besides (anything else in it is still refused and never run), and
writes its contents as plain tensors and values to NEW.pt.
"""
import argparse
from pathlib import Path

from bloodcells.models import checkpoints
from bloodcells.core.errors import UserError, stage_main


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the file to convert")
    parser.add_argument("target", help="where to write the converted checkpoint")
    parser.add_argument("--trust", action="store_true",
                        help="say that you made the file or trust where it came from")
    args = parser.parse_args()
    if not args.trust:
        raise UserError(f"converting {args.source} reads numpy objects from it; add --trust only if you made it "
                        "yourself or trust where it came from")
    if not Path(args.source).expanduser().is_file():
        raise UserError(f"{args.source} not found")
    if Path(args.target).resolve() == Path(args.source).expanduser().resolve():
        raise UserError("write the converted model to a new file, not over the one you convert")
    converted = checkpoints.convert_trusted(args.source, args.target)
    print(f"{args.target}: {len(converted.get('state_dict', converted))} tensors and the metadata as plain values; "
          "it loads without running code")


if __name__ == "__main__":
    main()
