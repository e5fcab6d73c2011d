"""The files csdseg writes, each through one owner: a crash never leaves half a file.

- :mod:`csdseg.files.atomic`: atomic writes (temporary file + rename) and the one-line
  :class:`~csdseg.errors.WriteError` of a full disk or forbidden folder;
- :mod:`csdseg.files.cam`: the CAM file ``cam/<id>.npy`` (IRN's format), its writer and reader;
- :mod:`csdseg.files.labels`: label PNGs (confident labels, pseudo-masks), writer and reader.

Nothing is imported here: a module that needs only atomic writes does not load the others.
"""
