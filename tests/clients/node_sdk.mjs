// flagsmith-nodejs, unchanged, against a live Railyard: prints what it read as JSON.
// Usage: node node_sdk.mjs <api url> <client key> <server key>
import { Flagsmith } from 'flagsmith-nodejs';

const [apiUrl, clientKey, serverKey] = process.argv.slice(2);
const shape = (flags) => Object.fromEntries(
  flags.allFlags().map((flag) => [flag.featureName, [flag.enabled, flag.value]]));

const remote = new Flagsmith({ environmentKey: clientKey, apiUrl, enableAnalytics: true });
const environmentFlags = await remote.getEnvironmentFlags();
environmentFlags.isFeatureEnabled('new_checkout'); // an evaluation the analytics count
const environment = shape(environmentFlags);
const pro = shape(await remote.getIdentityFlags('ada', { plan: 'pro' }));
const transient = shape(await remote.getIdentityFlags('eve', { plan: { value: 'pro', transient: true } }));
const eveLater = shape(await remote.getIdentityFlags('eve'));
await remote.analyticsProcessor.flush();

const local = new Flagsmith({
  environmentKey: serverKey, apiUrl, enableLocalEvaluation: true,
  environmentRefreshIntervalSeconds: 3600,
});
const localPro = shape(await local.getIdentityFlags('ada', { plan: 'pro' }));
await local.close();
await remote.close();
console.log(JSON.stringify({ environment, pro, transient, eveLater, localPro }));
