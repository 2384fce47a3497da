/*
 * agent_commands.h - what the bridge pushes to agents (agent_commands.c):
 * their settings when they connect, and the commands claimed for them.
 */
#ifndef PANKHA_AGENT_COMMANDS_H
#define PANKHA_AGENT_COMMANDS_H

#include "agents.h"

int			agent_commands_init(void);

/* Hear of each command written to an agent (its status is "sent" from now). */
typedef void (*command_sent_fn) (struct agent *a, const char *command_id);
int			agent_commands_on_sent(command_sent_fn fn);
void		agent_want_commands(struct agent *a);

#endif							/* PANKHA_AGENT_COMMANDS_H */
