// The views besides the fleet, by route name.
import { Agent } from './agent.js';
import { Settings } from './settings.js';
import { Profiles } from './profiles.js';
import { Alerts } from './alerts.js';
import { Commands } from './commands.js';
import { Audit } from './audit.js';

export const VIEWS = { agent: Agent, settings: Settings, profiles: Profiles, alerts: Alerts, commands: Commands, audit: Audit };
