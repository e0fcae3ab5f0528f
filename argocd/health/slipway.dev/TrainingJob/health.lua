-- Argo CD health of a slipway.dev TrainingJob (generated into ../../../argocd-cm.yaml by slipway_dev.argocd_cm).
-- kstatus conditions first (Stalled, Ready, observedGeneration), then the phase and the Suspended condition.
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
-- Waiting reasons that need a person, as Argo CD judges a Pod: the job cannot start until someone acts.
local needs_a_person = {
  ImagePullBackOff = true, ErrImagePull = true, InvalidImageName = true,
  CreateContainerConfigError = true, CreateContainerError = true, CrashLoopBackOff = true,
}

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
local ready, stalled, suspended = condition("Ready"), condition("Stalled"), condition("Suspended")
local phase = obj.status.phase
if phase == "Succeeded" or (ready ~= nil and ready.status == "True") then
  hs.status = "Healthy"
  hs.message = explain(ready, "Succeeded")
elseif phase == "Failed" or (stalled ~= nil and stalled.status == "True") then
  hs.status = "Degraded"
  hs.message = explain(stalled ~= nil and stalled.status == "True" and stalled or ready, "Failed")
elseif phase == "Suspended" or (suspended ~= nil and suspended.status == "True") then
  hs.status = "Suspended"
  hs.message = explain(suspended, "Suspended")
elseif ready ~= nil and needs_a_person[ready.reason] then
  hs.status = "Degraded"
  hs.message = explain(ready, ready.reason)
else
  hs.status = "Progressing"
  hs.message = explain(ready, phase or "Pending")
end
return hs
