"""What the consumer does with each action of an authenticated client, one module per
subject (as venueless' ``live/modules/``): ``auth`` (authenticate, accept terms),
``rooms`` (enter, leave) and ``chat`` (send, deliver).

Each handler takes the consumer and the frame's checked payload, and returns the
success payload (or sends frames itself, for authentication). Database work goes
through ``database_sync_to_async`` services; Redis only through the channel layer
and the presence functions of ``services`` (which take turns at the gate).
"""
