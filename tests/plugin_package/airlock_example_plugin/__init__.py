"""An example Airlock plugin: a tester for line-based greeting services and a trigger on a file's words."""
