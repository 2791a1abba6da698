"""Chat records: a conversation per record, as OpenAI's ``messages`` ({role, content}) or
ShareGPT's ``conversations`` ({from, value}; from: system, human, gpt, or user, assistant),
in JSON Lines or a JSON array.

A JSON file holds chat records when its first record has one of those fields and not the
(mapped) instruction field. Only single-turn conversations are read: an optional system
turn, one user turn, one assistant turn. The user turn becomes ``instruction`` (``input``
is ""), the assistant turn ``output`` (the only text with loss), the system turn
``system`` ("" without one). A longer conversation is a bad row: an error or, with
``on_bad_row: skip``, dropped and counted. The pipeline trains on one answer per row, and
folding the earlier turns into the instruction would train on a transcript that no chat
template renders.
"""

from data_pipeline.schema import SYSTEM_COLUMN, ColumnMapping, metadata_values, type_name

# The field that holds the conversation -> the fields of a message that hold its role and its text.
CONVERSATION_FIELDS = {"messages": ("role", "content"), "conversations": ("from", "value")}
_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


def is_chat_record(record: object, mapping: ColumnMapping) -> bool:
    """Whether a record holds a conversation rather than the mapped instruction field."""
    return (isinstance(record, dict) and mapping.sources["instruction"] not in record
            and any(field in record for field in CONVERSATION_FIELDS))


def chat_record_values(record: dict, mapping: ColumnMapping, where: str) -> dict[str, str | None]:
    """A chat record's target values, its metadata fields named by ``mapping``; a ValueError
    starting with ``where`` says what is wrong."""
    turns = _turns(record, where)
    system = turns.pop(0)[1] if turns and turns[0][0] == "system" else ""
    roles = [role for role, _ in turns]
    if roles != ["user", "assistant"]:
        raise ValueError(_not_single_turn(roles, where))
    (_, instruction), (_, output) = turns
    text = {"instruction": instruction, "input": "", "output": output, SYSTEM_COLUMN: system}
    return text | metadata_values(record, mapping, where)


def _turns(record: dict, where: str) -> list[tuple[str, str]]:
    """(role, text) of each message, the role one of system, user, assistant."""
    field = next((name for name in CONVERSATION_FIELDS if name in record), None)
    if field is None:
        raise ValueError(f"{where}: missing field 'messages' (or ShareGPT's 'conversations')")
    messages = record[field]
    if not isinstance(messages, list):
        raise ValueError(f"{where}: field {field!r} must be an array, got {type_name(messages)}")
    role_field, text_field = CONVERSATION_FIELDS[field]
    return [_turn(message, role_field, text_field, f"{where}: {field}[{index}]")
            for index, message in enumerate(messages)]


def _turn(message: object, role_field: str, text_field: str, where: str) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise ValueError(f"{where} must be an object, got {type_name(message)}")
    role, text = message.get(role_field), message.get(text_field)
    if not isinstance(role, str) or role not in _ROLES:
        raise ValueError(f"{where}: field {role_field!r} must be one of {list(_ROLES)}, got {role!r}")
    if not isinstance(text, str):
        raise ValueError(f"{where}: field {text_field!r} must be a string, got {type_name(text)}")
    return _ROLES[role], text


def _not_single_turn(roles: list[str], where: str) -> str:
    if len(roles) > 2:
        return (f"{where}: a conversation of {len(roles)} turns ({', '.join(roles)}) after any system turn; only "
                "single-turn ones are read (an optional system turn, one user turn, one assistant turn): split it "
                "into single-turn records, or set on_bad_row: skip to drop such records")
    return f"{where}: expected a user turn then an assistant turn (after an optional system turn), got {roles}"
