// The views besides the fleet, by route name.
import { Agent } from './agent.js';
import { Settings } from './settings.js';

export const VIEWS = { agent: Agent, settings: Settings };
