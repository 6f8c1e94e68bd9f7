"""The typed field registry: every display-filter field with its type, description and vectorised extractor.

    from diagnose.fields import lookup, all_fields, field, FieldType
    lookup("tcp.flags.syn").extract(ctx)   # -> list of Occurrence (values, present, layer) over a chunk
"""

from diagnose.fields.context import ChunkContext, iter_contexts
from diagnose.fields.registry import FIELD_MODULES, Field, all_fields, field, lookup, register, register_table, suggest
from diagnose.fields.values import ByteRanges, FieldType, Occurrence

__all__ = ["ByteRanges", "ChunkContext", "FIELD_MODULES", "Field", "FieldType", "Occurrence", "all_fields", "field",
           "iter_contexts", "lookup", "register", "register_table", "suggest"]
