"""Blue/green releases of a slot pair (the playbook's BG-1..5): the chat commands, the pure
decisions and the flow that drives them from the deploy to the watch after the switch."""
