-- Argo CD health of a slipway.dev DriftMonitor (generated into ../../../argocd-cm.yaml by slipway_dev.argocd_cm).
-- Drift is a finding about the data, not a fault of the monitor: Drifting and Retraining stay Healthy (the
-- monitor is doing its job) and say so in the message; alert on drift from Prometheus, not from Argo CD.
local hs = {}
local function condition(kind)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == kind then return c end
    end
  end
  return nil
end
local function explain(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then return c.message end
  if c ~= nil and c.reason ~= nil then return c.reason end
  return default
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the slipway operator to report status"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the slipway operator to observe generation " .. tostring(generation)
  return hs
end
local ready, stalled, drift = condition("Ready"), condition("Stalled"), condition("DriftDetected")
local state = obj.status.state
if stalled ~= nil and stalled.status == "True" then
  -- NoReferenceData, DetectorNotConfigured, InvalidSpec: a person must act.
  hs.status = "Degraded"
  hs.message = explain(stalled, "Stalled")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  if state == "Retraining" and obj.status.lastRetrain ~= nil then
    hs.message = "Retraining: TrainingJob " .. tostring(obj.status.lastRetrain.jobName)
  elseif state == "Drifting" then
    hs.message = "Drifting: " .. explain(drift, explain(ready, "drift detected"))
  else
    hs.message = explain(ready, "Monitoring")
  end
else
  hs.status = "Progressing"
  hs.message = explain(ready, "Pending")
end
return hs
