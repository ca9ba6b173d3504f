"""Experiments over whole trainings: `countnet sweep` (``sweep``) and `countnet
select-transforms` (``select``). Both train through ``countnet_classify.train``; the report
reads their folders, never the other way round."""
