-- Argo CD health of a slipway.dev Rollout (generated into ../../../argocd-cm.yaml by slipway_dev.argocd_cm).
-- kstatus conditions first (Stalled, Ready, observedGeneration); the phase says which kind of not-Ready it is.
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
local ready, stalled = condition("Ready"), condition("Stalled")
local phase = obj.status.phase
if stalled ~= nil and stalled.status == "True" then
  -- RolledBack / Aborted (stable still serves, but not what the spec asks for) or InvalidSpec.
  hs.status = "Degraded"
  hs.message = explain(stalled, "Stalled")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = explain(ready, "Serving")
elseif phase == "Paused" then
  -- A manual gate, or onNoData=hold: nothing moves until a person annotates slipway.dev/promote or /abort.
  hs.status = "Suspended"
  hs.message = explain(ready, "Paused")
else
  hs.status = "Progressing"
  hs.message = explain(ready, "Rolling out")
end
return hs
