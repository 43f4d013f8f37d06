"""The datasheet's questions about people: faces counted and boxed, a face-blurred release,
and removal requests found by hash and by likeness."""
