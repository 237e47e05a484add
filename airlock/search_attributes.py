"""Search attributes Airlock sets on its workflows: never a secret, they are stored unencrypted."""

from temporalio.common import SearchAttributeKey

KIND = SearchAttributeKey.for_keyword("AirlockKind")
QUEUE = SearchAttributeKey.for_keyword("AirlockQueue")
CONNECTION_ID = SearchAttributeKey.for_keyword("AirlockConnectionId")
STATE = SearchAttributeKey.for_keyword("AirlockState")
CLASSPATH = SearchAttributeKey.for_keyword("AirlockClasspath")

ALL = (KIND, QUEUE, CONNECTION_ID, STATE, CLASSPATH)
